"""Bring code and data out of the CAS onto a worker's disk, and load a function from code by CID."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cas import CID, BlockSource, _unixfs
from ..errors import ExecutionError, InvalidInputError

__all__ = [
    "ENTRYPOINT_RE",
    "code_cache_dir",
    "load_entrypoint",
    "make_read_only",
    "make_writable",
    "materialize",
    "materialize_code",
    "remove_tree",
]

ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
"""``module.sub:callable`` — dotted module path inside the code directory, then a callable name."""

_import_lock = threading.Lock()


def make_read_only(path: Path) -> None:
    """Remove every write bit under ``path`` (inputs must not be modified by the function)."""
    for p in _tree(path):
        mode = p.lstat().st_mode
        if not stat.S_ISLNK(mode):
            p.chmod(stat.S_IMODE(mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(path: Path) -> None:
    """Give the owner write access again so the tree can be deleted."""
    for p in _tree(path):
        mode = p.lstat().st_mode
        if not stat.S_ISLNK(mode):
            p.chmod(stat.S_IMODE(mode) | stat.S_IWUSR)


def remove_tree(path: Path) -> None:
    """Delete a tree that may have been made read-only."""
    if not path.exists() and not path.is_symlink():
        return
    with contextlib.suppress(OSError):
        make_writable(path)
    shutil.rmtree(path, ignore_errors=True)


def _tree(path: Path) -> list[Path]:
    if not path.is_dir() or path.is_symlink():
        return [path]
    out = [path]
    for root, dirs, files in os.walk(path):
        out.extend(Path(root, name) for name in dirs + files)
    return out


def materialize(source: BlockSource, cid: CID, target: Path, *, read_only: bool = True) -> Path:
    """Write the UnixFS file or directory ``cid`` at ``target`` (which must not exist yet).

    Every block is verified as it is read. With ``read_only`` the tree loses its write bits so a
    function that tries to modify its inputs fails instead of silently changing what it reads.
    """
    _unixfs.get(source, cid, target)
    if read_only:
        make_read_only(target)
    return target


def code_cache_dir() -> Path:
    """Worker-local cache of materialized code trees, one directory per code CID."""
    root = os.environ.get("CATS_CODE_CACHE")
    return Path(root) if root else Path(tempfile.gettempdir()) / "cats-code"


def materialize_code(source: BlockSource, code: CID) -> Path:
    """The code tree ``code`` on this worker's disk, materialized once and then reused.

    Content addressing makes the cache safe: a directory named by the CID can only ever hold
    that content. Concurrent workers race benignly: each writes a private copy and renames it
    into place; the loser discards its copy.
    """
    cache = code_cache_dir()
    final = cache / str(code)
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{code}.", dir=cache))
    try:
        materialize(source, code, tmp / "code", read_only=True)
        try:
            os.rename(tmp / "code", final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        remove_tree(tmp)
    return final


def _package_name(code: CID) -> str:
    # One synthetic top-level package per code CID: two versions of the same module never share
    # an entry in sys.modules, even inside one long-lived Ray worker.
    return "_cats_code_" + hashlib.sha256(code.buffer).hexdigest()[:24]


def load_entrypoint(code_dir: Path, entrypoint: str, code: CID) -> Callable[..., Any]:
    """Import ``module:callable`` from ``code_dir`` under a package name unique to ``code``.

    Modules of the code directory import each other relatively (``from . import helpers``);
    nothing is added to ``sys.path``, so the caller's working tree is never consulted.

    Raises:
        InvalidInputError: the entrypoint is malformed.
        ExecutionError: the module cannot be imported or has no such callable.
    """
    if not ENTRYPOINT_RE.match(entrypoint):
        raise InvalidInputError(f"expected an entrypoint 'module:callable', found {entrypoint!r}")
    module_name, attr = entrypoint.split(":")
    package = _package_name(code)
    with _import_lock:
        if package not in sys.modules:
            spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
            pkg = importlib.util.module_from_spec(spec)
            pkg.__path__ = [str(code_dir)]
            sys.modules[package] = pkg
        saved = sys.dont_write_bytecode
        sys.dont_write_bytecode = True  # the code tree is read-only and content-addressed
        try:
            module = importlib.import_module(f"{package}.{module_name}")
        except Exception as exc:
            raise ExecutionError(
                f"cannot import module {module_name!r} of code {code}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            sys.dont_write_bytecode = saved
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ExecutionError(
            f"expected a callable {attr!r} in module {module_name!r} of code {code}, found none"
        )
    return fn  # type: ignore[no-any-return]
