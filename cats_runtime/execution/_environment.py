"""Build a Function's Environment from the CAS, never from a package index, and run code in it.

Contract of the cache (``<cache>/<environment CID>/``, a virtualenv): an entry is complete
exactly when its marker file ``.cats-environment`` names the CID, every distribution's
``.dist-info`` directory is present and the tree hashes to the digest the marker recorded when it
was built (re-hashed at the entry's first use by each process: a tree changed since is rebuilt).
Entries are built in a private temporary directory beside the cache and renamed into place, so a
reader never sees a half-built entry; two builders racing both build, one rename wins and the
other's copy is discarded. An entry that fails the check (interrupted by a crash before the rename
completed its work, or damaged by hand) is moved aside and rebuilt. Tasks see entries only through
read-only binds.

Wheels come out of the CAS (every block verified against its CID), are checked against the
Environment's sha256 and installed by ``uv`` with ``--offline --no-index --require-hashes
--no-deps``: nothing is resolved, nothing is downloaded, and only the recorded distributions
are installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..cas import CID, DAG_CBOR, BlockSource, _unixfs
from ..errors import ExecutionError, IntegrityError, RecordError, StoreError
from ..records import EnvironmentRecord, decode_record
from ._materialize import remove_tree

__all__ = [
    "BuiltEnvironment",
    "build_environment",
    "check_compatible",
    "clear_environment_cache",
    "distributions_digest",
    "environment_cache_dir",
    "load_environment",
    "install_environment",
    "uv_binary",
]

MARKER: Final = ".cats-environment"


@dataclass(frozen=True)
class BuiltEnvironment:
    """An Environment ready to run code: the interpreter and the directories to import from.

    Run the interpreter as ``python -I -S`` with exactly ``site_packages`` (plus the code and
    the context API) on ``sys.path``: the node's own packages are then out of reach.

    Attributes:
        python: The interpreter.
        site_packages: The Environment's installed distributions (empty: the standard library only).
    """

    python: Path
    site_packages: list[Path]


def uv_binary() -> Path:
    """The ``uv`` executable shipped in the ``uv`` wheel (a runtime dependency).

    Raises:
        ExecutionError: the ``uv`` package is not installed.
    """
    try:
        import uv
    except ImportError:
        raise ExecutionError("expected the 'uv' package (pip install uv), found it missing") from None
    return Path(uv.find_uv_bin())


def environment_cache_dir(home: Path | None = None) -> Path:
    """Where built Environments live: ``$CATS_ENV_CACHE``, else ``<home>/envs``, else a temp dir."""
    root = os.environ.get("CATS_ENV_CACHE")
    if root:
        return Path(root)
    if home is not None:
        return home / "envs"
    # Never a shared, predictable /tmp path another user could plant entries in: per uid, 0700,
    # and refused unless this uid owns it and nobody else can write it.
    path = Path(tempfile.gettempdir()) / f"cats-envs-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise StoreError(f"expected {path} to be a private directory of uid {os.getuid()}, found otherwise")
    return path


def load_environment(source: BlockSource, cid: CID) -> EnvironmentRecord:
    """The verified, strictly decoded Environment record ``cid``.

    Raises:
        RecordError: ``cid`` is not a ``cats/environment`` record.
    """
    if cid.codec != DAG_CBOR:
        raise RecordError(
            f"expected an Environment record (dag-cbor) at {cid}, found a {cid.codec_name} block"
        )
    record = decode_record(source.get(cid))
    if not isinstance(record, EnvironmentRecord):
        raise RecordError(f"expected {cid} to be a cats/environment record, found {record.TYPE}")
    return record


def _node_interpreter() -> str:
    impl = "CPython" if sys.implementation.name == "cpython" else sys.implementation.name
    return f"{impl} {sys.version_info.major}.{sys.version_info.minor} on {sysconfig.get_platform()}"


def check_compatible(env: EnvironmentRecord, cid: CID) -> None:
    """Refuse an Environment this interpreter cannot run, naming both sides in one line.

    Checks the implementation, Python ``major.minor``, the platform, and that every wheel's tags
    are among those this interpreter supports.

    Raises:
        ExecutionError: the Environment was resolved for another interpreter or platform.
    """
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename

    impl = "CPython" if env.implementation == "cpython" else env.implementation
    wanted = f"{impl} {env.python} on {env.platform}"
    here = _node_interpreter()
    if wanted != here:
        raise ExecutionError(f"environment {cid} needs {wanted}; this node runs {here}")
    supported = set(sys_tags())
    for dist in env.distributions:
        tags = parse_wheel_filename(dist.filename)[3]
        if not tags & supported:
            raise ExecutionError(
                f"environment {cid}: wheel {dist.filename} does not fit this node's {here} (its tags are "
                "not among those the interpreter supports)"
            )


def distributions_digest(pairs: Iterable[tuple[str, str]]) -> str:
    """``sha256:<hex>`` of the sorted ``name==version`` lines (names normalized as pip does).

    The same function runs inside the task (over what is importable) and on the record (over
    what was declared), so equal digests mean the task saw exactly the declared distributions.
    """
    lines = sorted({f"{re.sub(r'[-_.]+', '-', n).lower()}=={v}" for n, v in pairs})
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def tree_digest(root: Path) -> str:
    """sha256 over every entry below ``root`` but the marker: relative path, kind, mode, content.

    Symlinks count by their target text (never followed), files by their bytes streamed.
    """
    outer = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel == MARKER:
                continue
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                outer.update(f"L {rel} {os.readlink(path)}\n".encode())
                continue
            inner = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    inner.update(chunk)
            outer.update(f"F {rel} {stat.S_IMODE(info.st_mode):o} {inner.hexdigest()}\n".encode())
    return "sha256:" + outer.hexdigest()


# Entries whose tree this process has re-hashed: (path, marker inode, marker mtime) -> ok. An entry
# is re-verified against its recorded digest at its first use by each worker process, so a tree
# damaged or changed while the node was down is rebuilt, not run; later uses cost one stat.
_VERIFIED: dict[tuple[str, int, int], bool] = {}


def _complete(venv: Path, cid: CID, env: EnvironmentRecord | None) -> bool:
    try:
        marker = json.loads((venv / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("environment") != str(cid):
        return False
    site = _site_packages(venv)
    names = marker.get("dist_info", [])
    if not isinstance(names, list) or not (venv / "bin" / "python").exists():
        return False
    if env is not None and len(names) != len(env.distributions):
        return False
    if not all(isinstance(n, str) and (site / n / "RECORD").is_file() for n in names):
        return False
    tree = marker.get("tree")
    if not isinstance(tree, str):
        return False  # built before trees were recorded: rebuilt
    info = (venv / MARKER).stat()
    key = (str(venv), info.st_ino, info.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = tree_digest(venv) == tree
    return _VERIFIED[key]


def _built(venv: Path) -> BuiltEnvironment:
    return BuiltEnvironment(python=venv / "bin" / "python", site_packages=[_site_packages(venv)])


def _export_wheels(source: BlockSource, env: EnvironmentRecord, cid: CID, dest: Path) -> Path:
    dest.mkdir()
    lines: list[str] = []
    for dist in env.distributions:
        if "/" in dist.filename or dist.filename.startswith("."):
            raise RecordError(f"environment {cid}: unsafe wheel file name {dist.filename!r}")
        path = dest / dist.filename
        _unixfs.get(source, dist.wheel, path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != dist.sha256:
            raise IntegrityError(
                f"environment {cid}: expected wheel {dist.filename} to hash to sha256 {dist.sha256}, "
                f"found {digest}"
            )
        lines.append(f"{dist.name}=={dist.version} --hash=sha256:{dist.sha256}")
    reqs = dest.parent / "requirements.txt"
    reqs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return reqs


def _uv_env(tmp: Path) -> dict[str, str]:
    # Nothing of the caller's configuration reaches uv: no index, no config file, no network,
    # a private cache (deleted with the build directory), never a downloaded interpreter.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "UV_OFFLINE": "1",
        "UV_NO_CONFIG": "1",
        "UV_CACHE_DIR": str(tmp / "uv-cache"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
    }


def _run_uv(args: list[str], tmp: Path, what: str) -> None:
    proc = subprocess.run(  # noqa: S603 (the uv binary, arguments are our own paths)
        [str(uv_binary()), *args], capture_output=True, text=True, check=False, env=_uv_env(tmp)
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()] or ["no output"]
        raise ExecutionError(f"{what}: uv failed: {lines[-1].strip()}")


def install_environment(venv: Path, wheels: Path, requirements: Path, scratch: Path) -> None:
    """Create ``venv`` and install exactly ``requirements`` from ``wheels``, offline, hashes required."""
    _run_uv(
        ["venv", "--quiet", "--relocatable", "--no-project", "--python", sys.executable, str(venv)],
        scratch,
        "creating the environment",
    )
    _run_uv(
        [
            *("pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--offline"),
            *("--no-index", "--find-links", str(wheels), "--require-hashes", "--no-deps"),
            *("--compile-bytecode", "--link-mode", "hardlink", "-r", str(requirements)),
        ],
        scratch,
        "installing the environment's wheels",
    )


def build_environment(source: BlockSource, cid: CID, cache: Path) -> BuiltEnvironment:
    """The Environment ``cid`` built under ``cache`` (reused when already complete).

    Raises:
        RecordError: ``cid`` is not an Environment record.
        ExecutionError: the Environment needs another interpreter or platform, or uv failed.
        IntegrityError: a wheel does not match its recorded sha256.
        BlockNotFoundError: a wheel's blocks are in no configured source.
    """
    final = cache / str(cid)
    if _complete(final, cid, None):
        return _built(final)
    env = load_environment(source, cid)
    check_compatible(env, cid)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cid}.", dir=cache))
    try:
        reqs = _export_wheels(source, env, cid, tmp / "wheels")
        venv = tmp / "venv"
        install_environment(venv, tmp / "wheels", reqs, tmp)
        site = _site_packages(venv)
        dist_info = sorted(p.name for p in site.glob("*.dist-info"))
        tree = tree_digest(venv)
        (venv / MARKER).write_text(
            json.dumps({"environment": str(cid), "dist_info": dist_info, "tree": tree}, sort_keys=True),
            encoding="utf-8",
        )
        if (final.exists() or final.is_symlink()) and not _complete(final, cid, env):
            # A damaged entry: move it aside first (rename is atomic; deleting is not).
            with_damage = tmp / "damaged"
            with contextlib.suppress(FileNotFoundError):  # another builder replaced it meanwhile
                os.rename(final, with_damage)
        try:
            os.rename(venv, final)
        except OSError:
            if not _complete(final, cid, env):
                raise
    finally:
        remove_tree(tmp)
    return _built(final)


def clear_environment_cache(cache: Path) -> int:
    """Delete every built Environment under ``cache``; returns how many entries were removed."""
    if not cache.is_dir():
        return 0
    count = 0
    for entry in cache.iterdir():
        remove_tree(entry)
        count += 1
    return count


# -- running code inside a built Environment ---------------------------------------------------
