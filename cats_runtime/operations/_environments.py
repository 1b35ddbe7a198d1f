"""Declared dependencies -> an Environment record: pinned requirements, wheels resolved once, stored.

A Function (or the Pulumi program) declares its dependencies as a pip requirements file in
which every requirement is pinned with ``==`` (``--hash=sha256:`` pins are checked when
present), or as a ``pyproject.toml`` plus a lock (``uv.lock`` or ``pylock.toml``) in its code
directory. :func:`resolve_environment` fetches exactly one wheel per pin with pip (wheels only,
no dependency resolution: the pins are the whole environment), checks the pins are closed under
the wheels' own requirements, stores every wheel as a UnixFS file and the
:class:`~cats_runtime.records.EnvironmentRecord` that lists them. From then on nothing needs a
package index: executors build the environment from those blocks (``execution/_environment.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any, Final

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..cas import CID, BlockSource, BlockStore, _unixfs
from ..errors import ExecutionError, IntegrityError, InvalidInputError
from ..execution import (
    build_environment,
    check_compatible,
    distributions_digest,
    load_environment,
    uv_binary,
)
from ..records import Distribution, EnvironmentRecord

__all__ = [
    "LOCK_FILES",
    "Pin",
    "declared_digest",
    "environment_drift",
    "environment_facts",
    "lock_requirements",
    "parse_requirements",
    "prepare_environment",
    "project_pins",
    "read_requirements",
    "resolve_environment",
    "reuse_environment",
]

LOCK_FILES: Final = ("uv.lock", "pylock.toml")
"""Lock files read from a code directory that has a ``pyproject.toml``, in order of preference."""

_HASH_RE: Final = re.compile(r"^--hash[=\s]\s*(\S+)$")
_OPTION_RE: Final = re.compile(r"(?:^|\s)(--?[A-Za-z])")
_PIN_OPS: Final = ("==", "===")
_PIP_SETTINGS: Final = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
}


@dataclass(frozen=True)
class Pin:
    """One pinned requirement.

    Attributes:
        name: The normalized distribution name.
        version: The exact version.
        hashes: Accepted sha256 digests of the wheel (lowercase hex); empty when none were given.
        extras: Extras requested (they decide which of the wheel's requirements must be pinned too).
        where: ``FILE:LINE`` of the requirement, for messages.
    """

    name: str
    version: str
    hashes: tuple[str, ...]
    extras: tuple[str, ...]
    where: str


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    # pip's rules: a trailing backslash continues the line; '#' after whitespace (or first)
    # starts a comment. Line numbers are those of the first physical line.
    start = 0
    parts: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not parts:
            start = number
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        joined = " ".join(p.strip() for p in parts).strip()
        parts = []
        if joined:
            yield start, joined
    if parts:
        joined = " ".join(p.strip() for p in parts).strip()
        if joined:
            yield start, joined


def _split_options(line: str, where: str) -> tuple[str, tuple[str, ...]]:
    match = _OPTION_RE.search(line)
    if match is None:
        return line, ()
    requirement, rest = line[: match.start(1)].strip(), line[match.start(1) :]
    hashes: list[str] = []
    for option in re.split(r"\s+(?=--?[A-Za-z])", rest.strip()):
        found = _HASH_RE.match(option.strip())
        if found is None:
            raise InvalidInputError(
                f"{where}: expected only '--hash=sha256:<hex>' options in a pinned requirements file, "
                f"found {option.split()[0]!r} (the Environment is built from the wheels pinned here)"
            )
        algorithm, _, digest = found.group(1).partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise InvalidInputError(f"{where}: expected --hash=sha256:<64 hex>, found {found.group(1)!r}")
        hashes.append(digest.lower())
    if not requirement:
        raise InvalidInputError(f"{where}: expected a requirement 'name==version', found only {rest!r}")
    return requirement, tuple(hashes)


def parse_requirements(text: str, source: str) -> list[Pin]:
    """Parse a pinned requirements file (``source`` names it in messages).

    Every requirement must be ``name==version`` (extras and markers allowed; requirements whose
    marker is false here are left out). Either every requirement has ``--hash`` pins or none has.

    Raises:
        InvalidInputError: a malformed line, an unpinned or URL requirement, a duplicate name,
            an option other than ``--hash``, or hashes on only some requirements; the message
            names the line.
    """
    pins: dict[str, Pin] = {}
    hashed: list[bool] = []
    for number, line in _logical_lines(text):
        where = f"{source}:{number}"
        if line.startswith("-"):
            raise InvalidInputError(
                f"{where}: expected a requirement 'name==version', found the option {line.split()[0]!r} "
                "(a pinned file names its wheels only)"
            )
        requirement_text, hashes = _split_options(line, where)
        try:
            req = Requirement(requirement_text)
        except InvalidRequirement as exc:
            # packaging's message draws a caret under the error on extra lines: keep the first.
            reason = str(exc).splitlines()[0] if str(exc) else "unparsable"
            raise InvalidInputError(
                f"{where}: expected a requirement 'name==version', found {requirement_text!r} ({reason})"
            ) from None
        if req.url:
            raise InvalidInputError(
                f"{where}: expected 'name==version', found a direct reference {requirement_text!r} "
                "(only wheels from an index can be pinned)"
            )
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator not in _PIN_OPS or "*" in specs[0].version:
            raise InvalidInputError(
                f"{where}: expected a pinned requirement 'name==version', found {requirement_text!r} "
                "(pin every requirement, e.g. with `cats lock`)"
            )
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        if name in pins:
            raise InvalidInputError(f"{where}: expected one pin per distribution, found {name!r} again")
        pins[name] = Pin(name, specs[0].version, hashes, tuple(sorted(req.extras)), where)
        hashed.append(bool(hashes))
    if any(hashed) and not all(hashed):
        bare = next(p for p in pins.values() if not p.hashes)
        raise InvalidInputError(f"{bare.where}: expected --hash pins on every requirement (some have them)")
    return sorted(pins.values(), key=lambda p: p.name)


def read_requirements(path: Path) -> list[Pin]:
    """:func:`parse_requirements` on a file.

    Raises:
        InvalidInputError: the file is missing, not UTF-8 text, or not a pinned requirements file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"expected a requirements file, found nothing at {path}") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise InvalidInputError(f"expected a UTF-8 requirements file at {path}, found: {exc}") from None
    return parse_requirements(text, path.name)


def _pylock_pins(path: Path) -> list[Pin]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"expected a TOML lock at {path}, found: {exc}") from None
    lines: list[str] = []
    for i, package in enumerate(data.get("packages", [])):
        where = f"{path.name}: packages[{i}]"
        if not isinstance(package, dict) or "name" not in package or "version" not in package:
            raise InvalidInputError(f"{where}: expected a package with a name and a version")
        marker = package.get("marker")
        try:
            if marker and not Marker(str(marker)).evaluate():
                continue
        except InvalidMarker:
            found = str(marker)[:200]
            raise InvalidInputError(f"{where}: expected a PEP 508 marker, found {found!r}") from None
        wheels = package.get("wheels", [])
        digests = sorted(
            {
                str(w["hashes"]["sha256"])
                for w in (wheels if isinstance(wheels, list) else [])
                if isinstance(w, dict) and isinstance(w.get("hashes"), dict) and "sha256" in w["hashes"]
            }
        )
        if not digests:
            raise InvalidInputError(f"{where}: expected wheels with sha256 hashes for {package['name']!r}")
        lines.append(
            f"{package['name']}=={package['version']} " + " ".join(f"--hash=sha256:{d}" for d in digests)
        )
    return parse_requirements("\n".join(lines) + "\n", path.name)


def project_pins(code_dir: Path) -> tuple[list[Pin], Path] | None:
    """The pins a code directory declares with ``pyproject.toml`` plus a lock, or None.

    ``uv.lock`` is exported with ``uv export --frozen`` (hashes included); ``pylock.toml``
    (PEP 751) is read directly.

    Raises:
        InvalidInputError: ``pyproject.toml`` declares dependencies but no lock is there, or the
            lock cannot be read.
    """
    pyproject = code_dir / "pyproject.toml"
    if not pyproject.is_file():
        return None
    for name in LOCK_FILES:
        lock = code_dir / name
        if not lock.is_file():
            continue
        if name == "pylock.toml":
            return _pylock_pins(lock), lock
        with tempfile.TemporaryDirectory(prefix="cats-export-") as tmp:
            out = Path(tmp) / "requirements.txt"
            _uv(
                [
                    *("export", "--frozen", "--format", "requirements-txt", "--no-emit-project"),
                    *("--no-dev", "--no-header", "--project", str(code_dir), "-o", str(out)),
                ],
                what=f"exporting {lock}",
            )
            return parse_requirements(out.read_text(encoding="utf-8"), name), lock
    try:
        project: Any = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"expected TOML in {pyproject}, found: {exc}") from None
    if isinstance(project, dict) and project.get("dependencies"):
        raise InvalidInputError(
            f"expected a lock ({' or '.join(LOCK_FILES)}) beside {pyproject}, which declares dependencies; "
            "found none (run `uv lock`)"
        )
    return None


# -- pip and uv -------------------------------------------------------------------------------


def _uv(args: list[str], *, what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(  # noqa: S603 (fixed program, arguments are paths and pins)
        [str(uv_binary()), *args], capture_output=True, text=True, check=False, env=env
    )
    if proc.returncode != 0:
        raise InvalidInputError(f"{what}: uv failed: {_last_line(proc.stderr)}")
    return proc.stdout


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    useful = [ln for ln in lines if "error" in ln.lower() or "no matching" in ln.lower()]
    return (useful or lines or ["no output"])[-1]


def _pip_index_options() -> list[str]:
    """The indexes and find-links pip is configured with, as uv options (lock where pip resolves)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    options: list[str] = []
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        setting = key.rpartition(".")[2]
        flag = {
            "index-url": "--index-url",
            "extra-index-url": "--extra-index-url",
            "find-links": "--find-links",
        }
        if setting in flag:
            for item in value.strip().strip("'\"").split():
                options += [flag[setting], item]
    for var, flag_name in (("PIP_INDEX_URL", "--index-url"), ("PIP_EXTRA_INDEX_URL", "--extra-index-url")):
        for item in os.environ.get(var, "").split():
            options += [flag_name, item]
    return options


def lock_requirements(source: Path, output: Path, *, index_options: list[str] | None = None) -> list[Pin]:
    """Pin loose requirements: ``uv pip compile --generate-hashes`` for this interpreter.

    Args:
        source: A requirements file (``numpy>=2``) or a ``pyproject.toml``.
        output: Where the pinned file (every requirement ``==`` with its hashes) is written.
        index_options: uv index options; default: pip's configured indexes and find-links.

    Returns:
        The pins written (checked with :func:`parse_requirements`).
    """
    if not source.is_file():
        raise InvalidInputError(f"expected a requirements file or pyproject.toml, found nothing at {source}")
    opts = _pip_index_options() if index_options is None else index_options
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    _uv(
        [
            *("pip", "compile", "--generate-hashes", "--no-header", "--quiet", "--python-version", python),
            *("--python-platform", _uv_platform(), *opts, str(source), "-o", str(output)),
        ],
        what=f"locking {source}",
    )
    return read_requirements(output)


def _uv_platform() -> str:
    machine = sysconfig.get_platform().rpartition("-")[2]
    if sys.platform == "darwin":
        return f"{machine}-apple-darwin"
    if sys.platform == "win32":
        return f"{machine}-pc-windows-msvc"
    return f"{machine}-unknown-linux-gnu"


def _download(pins: list[Pin], dest: Path) -> None:
    lines = [f"{p.name}=={p.version}" + "".join(f" --hash=sha256:{h}" for h in p.hashes) for p in pins]
    reqs = dest / "requirements.txt"
    reqs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--no-input"]
    command += ["--disable-pip-version-check", "--quiet", "-d", str(dest / "wheels"), "-r", str(reqs)]
    if pins[0].hashes:
        command.append("--require-hashes")
    proc = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        detail = _last_line(proc.stderr)
        if "no matching distribution" in detail.lower() or "could not find a version" in proc.stderr.lower():
            raise InvalidInputError(
                f"expected a wheel for every pin ({_node_python()}), found none: {detail} "
                "(sources that cannot be had as wheels are not supported: build a wheel and pin it)"
            )
        if "hash" in detail.lower():
            raise IntegrityError(f"a downloaded wheel does not match its --hash pin: {detail}")
        raise ExecutionError(f"downloading the pinned wheels failed: {detail}")


def _node_python() -> str:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"{sys.implementation.name} {version} on {sysconfig.get_platform()}"


def _wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(
            (n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None
        )
        if meta is None:
            raise InvalidInputError(f"expected a wheel with .dist-info/METADATA, found none in {wheel.name}")
        headers = HeaderParser().parsestr(zf.read(meta).decode("utf-8", "replace"))
    out: list[Requirement] = []
    for text in headers.get_all("Requires-Dist") or []:
        try:
            out.append(Requirement(text))
        except InvalidRequirement:
            continue  # a wheel's own malformed metadata cannot be fixed here; pip ignores it too
    return out


def _check_closed(pins: dict[str, Pin], wheels: dict[str, Path]) -> None:
    for name, pin in pins.items():
        for req in _wheel_requirements(wheels[name]):
            extras = ("", *pin.extras)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
                continue
            dep = canonicalize_name(req.name)
            have = pins.get(dep)
            if have is None:
                raise InvalidInputError(
                    f"{pin.where}: {pin.name}=={pin.version} requires {req}, which is not pinned "
                    "(pin the whole closure, e.g. with `cats lock`)"
                )
            if not req.specifier.contains(have.version, prereleases=True):
                raise InvalidInputError(
                    f"{have.where}: {pin.name}=={pin.version} requires {req}, found {dep}=={have.version}"
                )


def _pins_key(pins: list[Pin]) -> str:
    lines = sorted(
        f"{p.name}=={p.version} {','.join(sorted(p.hashes))} [{','.join(sorted(p.extras))}]" for p in pins
    )
    return hashlib.sha256(("\n".join([_node_python(), *lines])).encode()).hexdigest()


def _satisfies(env: EnvironmentRecord, pins: list[Pin]) -> bool:
    """Whether ``env`` is a resolution of exactly ``pins`` for this interpreter and platform."""
    if (env.python, env.implementation, env.platform) != (
        f"{sys.version_info.major}.{sys.version_info.minor}",
        sys.implementation.name,
        sysconfig.get_platform(),
    ):
        return False
    by_name = {p.name: p for p in pins}
    if {d.name for d in env.distributions} != set(by_name) or len(env.distributions) != len(by_name):
        return False
    return all(
        d.version == by_name[d.name].version
        and (not by_name[d.name].hashes or d.sha256 in by_name[d.name].hashes)
        for d in env.distributions
    )


def reuse_environment(
    pins: list[Pin], source: BlockSource, memo: Path
) -> tuple[EnvironmentRecord, CID] | None:
    """The Environment ``memo`` remembers for ``pins``, if it still holds; None otherwise.

    It holds when its record is in ``source`` with every wheel and still satisfies the pins
    (names, versions, hashes, this interpreter and platform). Nothing is downloaded or written.
    """
    return _reuse(pins, source, memo)


def _reuse(pins: list[Pin], store: BlockSource, memo: Path) -> tuple[EnvironmentRecord, CID] | None:
    from ..cas import reachable
    from ..errors import CatsError
    from ..records import decode_record

    try:
        cid = CID.decode((memo / _pins_key(pins)).read_text(encoding="ascii").strip())
        record = decode_record(store.get(cid))
        if not isinstance(record, EnvironmentRecord) or not _satisfies(record, pins):
            return None
        reachable(store, [cid])  # every wheel still in the store
    except (OSError, ValueError, CatsError):
        return None
    return record, cid


def resolve_environment(
    pins: list[Pin], store: BlockStore | None, *, memo: Path | None = None
) -> tuple[EnvironmentRecord, CID]:
    """Fetch one wheel per pin (wheels only, with pip), check them, store them and the record.

    Args:
        pins: The whole environment (as from :func:`parse_requirements`), closed under the
            wheels' requirements.
        store: Where wheels and the record go (None: only compute the CID).
        memo: A directory remembering which Environment the same pins resolved to before: when
            that record is in ``store`` with every wheel and still satisfies the pins (names,
            versions, hashes, this interpreter and platform), it is reused without asking an
            index; otherwise the pins are resolved again and the memo updated.

    Returns:
        The Environment record and its CID.

    Raises:
        InvalidInputError: a pin with no wheel for this interpreter and platform, or
            pins not closed under the wheels' requirements.
        IntegrityError: a wheel does not match its ``--hash`` pin.
    """
    if memo is not None and store is not None and (known := _reuse(pins, store, memo)) is not None:
        return known
    by_name = {p.name: p for p in pins}
    with tempfile.TemporaryDirectory(prefix="cats-wheels-") as tmp:
        root = Path(tmp)
        (root / "wheels").mkdir()
        if pins:  # no pins: the standard library alone, still isolated from the node's packages
            _download(pins, root)
        wheels: dict[str, Path] = {}
        for path in sorted((root / "wheels").iterdir()):
            try:
                name, version, _, _ = parse_wheel_filename(path.name)
            except InvalidWheelFilename:
                raise InvalidInputError(f"expected only wheels, found {path.name}") from None
            pin = by_name.get(canonicalize_name(name))
            if pin is None or version != Version(pin.version):
                raise ExecutionError(f"pip returned {path.name}, which matches no pin")
            wheels[pin.name] = path
        missing = sorted(set(by_name) - set(wheels))
        if missing:
            raise InvalidInputError(f"expected a wheel for {missing[0]}, found none ({_node_python()})")
        _check_closed(by_name, wheels)
        dists: list[Distribution] = []
        for dist_name, path in sorted(wheels.items()):
            pin = by_name[dist_name]
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if pin.hashes and digest not in pin.hashes:
                raise IntegrityError(
                    f"{pin.where}: expected {path.name} to hash to one of the pins, found {digest}"
                )
            cid = _unixfs.add_path(path, store).cid
            dists.append(
                Distribution(
                    name=dist_name,
                    version=pin.version,
                    filename=path.name,
                    sha256=digest,
                    size=path.stat().st_size,
                    wheel=cid,
                )
            )
    record = EnvironmentRecord(
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        implementation=sys.implementation.name,
        platform=sysconfig.get_platform(),
        distributions=dists,
    )
    block = record.to_block()
    if store is not None:
        store.put(block)
        if memo is not None:
            memo.mkdir(parents=True, exist_ok=True)
            entry = memo / _pins_key(pins)
            tmp_entry = entry.with_suffix(f".{os.getpid()}.tmp")
            tmp_entry.write_text(str(block.cid), encoding="ascii")
            os.replace(tmp_entry, entry)  # readers see the old CID or the new one, never half
    return record, block.cid


# -- at run time ------------------------------------------------------------------------------


def declared_digest(env: EnvironmentRecord) -> str:
    """The distributions digest a task in ``env`` should observe (see ``distributions_digest``)."""
    return distributions_digest((d.name, d.version) for d in env.distributions)


def prepare_environment(source: BlockSource, cid: CID, cache: Path) -> EnvironmentRecord:
    """Check and build the Environment ``cid`` on the driver, before any task starts.

    A mismatched interpreter or platform fails here in one line; the built entry is then
    found complete by every task on this machine.
    """
    env = load_environment(source, cid)
    check_compatible(env, cid)
    build_environment(source, cid, cache)
    return env


def environment_facts(cid: CID, env: EnvironmentRecord, facts: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The Invoice's executor facts about the Environment: what was declared and what ran.

    ``distributions`` is the digest the tasks observed (comma-separated when tasks disagreed);
    ``distributions_declared`` is the digest of the record: they differ exactly when what was
    importable drifted from what was declared.
    """
    seen = [f for f in facts if f]
    return {
        "environment": str(cid),
        "interpreter": ",".join(sorted({f.get("interpreter", "?") for f in seen})) or "none",
        "distributions": ",".join(sorted({f.get("distributions", "?") for f in seen})) or "none",
        "distributions_declared": declared_digest(env),
    }


def environment_drift(claimed: Mapping[str, str], found: Mapping[str, str]) -> list[str]:
    """Differences between two Invoices' environment facts, for ``verify``'s report."""
    out: list[str] = []
    declared = found.get("distributions_declared")
    ran = found.get("distributions")
    if declared is not None and ran not in (None, "none") and ran != declared:
        out.append(
            f"environment drift: the tasks imported distributions {ran}, the record declares {declared}"
        )
    before = claimed.get("distributions")
    if before is not None and ran is not None and before != ran:
        out.append(f"environment: the BOM's run imported distributions {before}, this run {ran}")
    return out
