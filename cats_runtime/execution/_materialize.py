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
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cas import CID, BlockSource, _unixfs
from ..errors import ExecutionError, InvalidInputError

__all__ = [
    "ENTRYPOINT_RE",
    "load_entrypoint",
    "make_read_only",
    "make_writable",
    "materialize",
    "materialize_code",
    "package_name",
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


def materialize(
    source: BlockSource,
    cid: CID,
    target: Path,
    *,
    read_only: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write the UnixFS file or directory ``cid`` at ``target`` (which must not exist yet).

    Every block is verified as it is read. With ``read_only`` the tree loses its write bits so a
    function that tries to modify its inputs fails instead of silently changing what it reads.
    ``progress`` gets the bytes written as they are; raising from it stops the write (a budget).
    """
    _unixfs.get(source, cid, target, progress=progress)
    if read_only:
        make_read_only(target)
    return target


def materialize_code(source: BlockSource, code: CID, target: Path) -> Path:
    """The code tree ``code`` written at ``target`` (read-only), from verified blocks, for one run.

    There is deliberately no shared cache: a tree on disk that some earlier process could have
    written is not evidence of its CID (code of one organization once rewrote the cached tree of
    another's). Materializing a code tree costs about as much as re-hashing it, so each task
    gets its own copy inside its private task directory.
    """
    return materialize(source, code, target, read_only=True)


def package_name(code: CID) -> str:
    """The synthetic top-level package the code tree ``code`` is imported as."""
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
    package = package_name(code)
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
