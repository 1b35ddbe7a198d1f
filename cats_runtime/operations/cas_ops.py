"""Operations of the content-addressed core, as the CLI and the node service call them.

Each function opens the home it is given, does one thing and returns a value type; none
prints. They hold the repository's write lock while they add and pin, so a concurrent
``repo gc`` never deletes blocks of an add in progress.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..cas import CID, DAG_CBOR, DAG_PB, RAW, Repo, _dagcbor, _dagjson, _unixfs
from ..cas._car import export_car, import_car
from ..cas._dagpb import decode_pbnode
from ..cas._profiles import DEFAULT_PROFILE, ImportProfile, get_profile
from ..cas._unixfs_export import resolve_path, split_path
from ..cas._unixfs_pb import decode_unixfs
from ..errors import InvalidInputError, UnsupportedCodecError

__all__ = [
    "AddOutcome",
    "BlockInfo",
    "add",
    "car_export",
    "car_import",
    "cat",
    "get",
    "open_repo",
    "pin_add",
    "pin_ls",
    "pin_rm",
    "repo_gc",
    "repo_verify",
    "resolve",
    "show",
]


def open_repo(home: Path) -> Repo:
    """Open (creating on first use) the repository at ``home``."""
    return Repo.open(home)


@dataclass(frozen=True)
class AddOutcome:
    """What ``add`` produced."""

    cid: CID
    size: int
    pinned: bool
    skipped_hidden: int = 0
    profile: ImportProfile = DEFAULT_PROFILE


def add(
    home: Path,
    path: str | os.PathLike[str],
    *,
    cid_version: int | None = None,
    only_hash: bool = False,
    pin: bool = True,
    exclude: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
    hidden: bool = False,
    profile: str | None = None,
) -> AddOutcome:
    """Add a file, directory or symlink as ``ipfs add -r`` does; with ``only_hash`` nothing is written.

    ``cid_version`` 0 selects the ``unixfs-v0-2015`` profile (plain ``ipfs add``); give at most
    one of ``cid_version`` and ``profile``.
    """
    chosen = _choose_profile(cid_version, profile)
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    store = None if only_hash else open_repo(home)
    if store is None:
        result = _unixfs.add_path(
            path, None, exclude=exclude, progress=progress, hidden=hidden, profile=chosen
        )
        return AddOutcome(result.cid, result.size, False, result.skipped_hidden, chosen)
    with store.write_lock():
        result = _unixfs.add_path(
            path, store.blocks, exclude=exclude, progress=progress, hidden=hidden, profile=chosen
        )
        if pin:
            store.pins.add(result.cid, name=name)
    return AddOutcome(result.cid, result.size, pin, result.skipped_hidden, chosen)


def _choose_profile(cid_version: int | None, profile: str | None) -> ImportProfile:
    if profile is not None:
        if cid_version is not None:
            raise InvalidInputError("expected --cid-version or --profile, found both")
        return get_profile(profile)
    if cid_version is None or cid_version == 1:
        return DEFAULT_PROFILE
    if cid_version == 0:
        return get_profile("unixfs-v0-2015")
    raise InvalidInputError(f"expected --cid-version 0 or 1, found {cid_version!r}")


def resolve(home: Path, text: str) -> CID:
    """``CID`` or ``CID/a/b`` (also ``/ipfs/CID/a/b``): the CID the UnixFS path names.

    Raises:
        InvalidCIDError: the first segment is not a CID.
        NotFoundError: an entry of the path does not exist.
        InvalidInputError: the path goes through a file or symlink.
    """
    head, segments = split_path(text)
    root = CID.decode(head)
    if not segments:
        return root
    return resolve_path(open_repo(home).blocks, root, segments)[0]


def cat(home: Path, cid: CID) -> Iterator[bytes]:
    """Stream a UnixFS file's bytes, every block verified."""
    return _unixfs.cat(open_repo(home).blocks, cid)


def get(
    home: Path,
    cid: CID,
    output: Path,
    *,
    progress: Callable[[int], None] | None = None,
    verbatim_symlinks: bool = False,
) -> None:
    """Write a UnixFS file or directory at ``output`` (never outside it)."""
    _unixfs.get(open_repo(home).blocks, cid, output, progress=progress, verbatim_symlinks=verbatim_symlinks)


@dataclass(frozen=True)
class BlockInfo:
    """A summary of one block for ``cats show``."""

    cid: CID
    codec: str
    size: int
    summary: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"cid": str(self.cid), "codec": self.codec, "size": self.size, **self.summary}

    def to_text(self) -> str:
        """Human-readable text."""
        return self.text


def show(home: Path, cid: CID) -> BlockInfo:
    """Describe a block: records as DAG-JSON, dag-pb/UnixFS and raw nodes summarized."""
    data = open_repo(home).blocks.get(cid)
    if cid.codec == RAW:
        return BlockInfo(cid, "raw", len(data), {"kind": "raw"}, f"raw block {cid}: {len(data)} bytes")
    if cid.codec == DAG_CBOR:
        obj = _dagcbor.decode(data)
        rtype = obj.get("type") if isinstance(obj, dict) else None
        text = _dagjson.encode(obj, indent=2)
        return BlockInfo(
            cid,
            "dag-cbor",
            len(data),
            {"record_type": rtype, "value": __import__("json").loads(_dagjson.encode(obj))},
            text,
        )
    if cid.codec == DAG_PB:
        node = decode_pbnode(data)
        fs = _describe_unixfs(node.data)
        links = [{"name": lk.name, "cid": str(lk.cid), "tsize": lk.tsize} for lk in node.links]
        lines = [f"dag-pb node {cid}: {len(data)} bytes, UnixFS {fs.get('type', 'none')}"]
        if "filesize" in fs:
            lines.append(f"file size: {fs['filesize']}")
        lines.extend(f"  {lk['cid']}  {lk['tsize']}  {lk['name'] or ''}".rstrip() for lk in links)
        return BlockInfo(cid, "dag-pb", len(data), {"unixfs": fs, "links": links}, "\n".join(lines))
    raise UnsupportedCodecError(f"expected a raw, dag-pb or dag-cbor block, found codec {cid.codec_name}")


def _describe_unixfs(data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {"type": "none"}
    msg = decode_unixfs(data)
    out: dict[str, Any] = {"type": msg.type_name.lower()}
    if msg.filesize is not None:
        out["filesize"] = msg.filesize
    if msg.blocksizes:
        out["blocksizes"] = list(msg.blocksizes)
    if msg.fanout is not None:
        out["fanout"] = msg.fanout
    if msg.type_name.lower() == "symlink" and msg.data is not None:
        out["target"] = msg.data.decode("utf-8", "replace")
    return out


def car_export(home: Path, cid: CID, output: Path, *, version: int = 1) -> int:
    """Write the DAG under ``cid`` as a CAR file (``-`` for stdout); returns the block count.

    ``version`` 1 is ``ipfs dag export``'s CARv1; 2 a CARv2 with an index.
    """
    if version not in (1, 2):
        raise InvalidInputError(f"expected --version 1 or 2, found {version!r}")
    repo = open_repo(home)
    if str(output) == "-":
        if version == 1:
            return export_car(repo.blocks, [cid], sys.stdout.buffer)
        with tempfile.TemporaryFile(prefix=".car-export-") as spool:  # CARv2 needs a seekable file
            count = export_car(repo.blocks, [cid], spool, version=2)
            spool.seek(0)
            shutil.copyfileobj(spool, sys.stdout.buffer, 1 << 20)
        return count
    # Write beside the target and rename, so a failure never leaves a half CAR under its name.
    output = output.expanduser()
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as out:
            count = export_car(repo.blocks, [cid], out, version=version)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def car_import(home: Path, path: Path, *, pin: bool = True) -> list[CID]:
    """Import a CAR file all-or-nothing; pins its roots unless told not to."""
    repo = open_repo(home)
    with repo.write_lock(), open(path, "rb") as stream:
        roots = _import(repo, stream)
        if pin:
            for root in roots:
                repo.pins.add(root, name=path.name)
    return roots


def _import(repo: Repo, stream: BinaryIO) -> list[CID]:
    return import_car(repo.blocks, stream)


def repo_verify(home: Path) -> Any:
    """Re-hash every block; the report lists the corrupt ones."""
    return open_repo(home).verify()


def repo_migrate(home: Path, *, progress: Callable[[int], None] | None = None) -> Any:
    """Pack the blocks a layout-1 repository keeps as one file each; idempotent, crash-safe."""
    return open_repo(home).migrate(progress)


def repo_gc(home: Path) -> Any:
    """Remove blocks that no pin reaches."""
    return open_repo(home).gc()


def pin_add(home: Path, cid: CID, *, name: str = "") -> None:
    """Pin ``cid`` recursively."""
    repo = open_repo(home)
    with repo.write_lock():
        repo.pins.add(cid, name=name)


def pin_rm(home: Path, cid: CID) -> None:
    """Remove the pin on ``cid``."""
    open_repo(home).pins.remove(cid)


def pin_ls(home: Path) -> list[Any]:
    """Every pin."""
    return list(open_repo(home).pins.ls())
