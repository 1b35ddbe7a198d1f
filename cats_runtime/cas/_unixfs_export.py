r"""The UnixFS exporter: stream files, list directories, write trees to disk safely.

Every block comes from a :class:`BlockSource`, whose ``get`` verifies it against its CID, and
the structure is checked as it is read (blocksizes against children, filesize against data),
so a DAG that lies about its sizes is refused instead of silently truncated.

``get`` never writes outside its target: entry names must be plain (no ``.``, ``..``, ``/``,
``\\`` or NUL), files are created with ``O_EXCL | O_NOFOLLOW``, and symlinks (relative only,
checked lexically and again after creation) are made after every file and directory exists.
The target must not exist, or be an empty directory when the root is a directory; an existing
non-empty target is refused rather than merged, so a get can never clobber files.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import (
    DecodeError,
    InvalidInputError,
    NotFoundError,
    StoreError,
    UnsafePathError,
    UnsupportedCodecError,
)
from ._cid import CID, DAG_PB, RAW
from ._dagpb import PBLink, PBNode, decode_pbnode
from ._hamt import hamt_entries, hamt_find
from ._store import BlockSource
from ._unixfs_import import _get_pool
from ._unixfs_pb import DirEntry, Kind, NodeInfo, UnixFSData, UnixFSType, decode_unixfs

__all__ = ["cat", "get", "ls", "resolve_path", "split_path", "stat"]

Progress = Callable[[int], None]
_FILE_TYPES = (UnixFSType.FILE, UnixFSType.RAW)
_DIR_TYPES = (UnixFSType.DIRECTORY, UnixFSType.HAMT_SHARD)
_PREFETCH = 6  # blocks fetched ahead while a file is read (sources must allow concurrent get)


def _decode(cid: CID, data: bytes) -> tuple[PBNode, UnixFSData]:
    if cid.codec != DAG_PB:
        raise UnsupportedCodecError(f"expected a raw or dag-pb UnixFS block, found {cid.codec_name} at {cid}")
    node = decode_pbnode(data)
    if node.data is None:
        raise DecodeError(f"expected UnixFS Data in dag-pb node {cid}, found none")
    return node, decode_unixfs(node.data)


def _load(source: BlockSource, cid: CID) -> tuple[bytes, PBNode | None, UnixFSData | None]:
    if cid.codec not in (RAW, DAG_PB):  # before fetching: a remote source may be slow to say no
        raise UnsupportedCodecError(f"expected a raw or dag-pb UnixFS block, found {cid.codec_name} at {cid}")
    data = source.get(cid)
    if cid.codec == RAW:
        return data, None, None
    node, unixfs = _decode(cid, data)
    return data, node, unixfs


def _kind(unixfs: UnixFSData | None) -> Kind:
    if unixfs is None or unixfs.type in _FILE_TYPES:
        return "file"
    if unixfs.type in _DIR_TYPES:
        return "directory"
    if unixfs.type == UnixFSType.SYMLINK:
        return "symlink"
    raise DecodeError(f"expected a UnixFS File, Directory, HAMTShard or Symlink, found {unixfs.type_name}")


def _file_size(unixfs: UnixFSData) -> int:
    inline = len(unixfs.data or b"")
    total = inline + sum(unixfs.blocksizes)
    if unixfs.filesize is not None and unixfs.filesize != total:
        raise DecodeError(f"expected UnixFS filesize {total} (data + blocksizes), found {unixfs.filesize}")
    return total


def _cumulative(block: bytes, node: PBNode | None) -> int:
    return len(block) + (sum(link.tsize or 0 for link in node.links) if node is not None else 0)


# -- files ------------------------------------------------------------------------------------
def _cat_from(
    source: BlockSource, cid: CID, first: tuple[bytes, PBNode | None, UnixFSData | None]
) -> Iterator[bytes]:
    # Depth-first, left to right, lazy. The next few blocks on the stack are fetched ahead in
    # the pool: a verifying ``get`` hashes the block, and hashlib releases the GIL, so fetches
    # overlap with the consumer. Output order is the stack order, so it is deterministic.
    stack: list[list[Any]] = []  # [cid, expected file bytes, Future | None], next block last
    loaded: tuple[bytes, PBNode | None, UnixFSData | None] | None = first
    current, expected = cid, None
    pool = None
    while True:
        if loaded is None:
            if not stack:
                return
            if pool is None:
                pool = _get_pool()
            for entry in stack[-_PREFETCH:]:
                if entry[2] is None:
                    entry[2] = pool.submit(_fetch, source, entry[0])
            current, expected, future = stack.pop()
            loaded = future.result()
        data, node, unixfs = loaded
        loaded = None
        if node is None or unixfs is None:
            if expected is not None and len(data) != expected:
                raise DecodeError(f"expected {expected} bytes in raw leaf {current}, found {len(data)}")
            if data:
                yield data
            continue
        if unixfs.type not in _FILE_TYPES:
            raise DecodeError(f"expected a UnixFS File inside a file, found {unixfs.type_name} at {current}")
        size = _file_size(unixfs)
        if expected is not None and size != expected:
            raise DecodeError(f"expected {expected} file bytes under {current}, found {size}")
        if len(unixfs.blocksizes) != len(node.links):
            raise DecodeError(
                f"expected one blocksize per link in {current}, found {len(unixfs.blocksizes)} "
                f"blocksizes for {len(node.links)} links"
            )
        if unixfs.data:
            yield unixfs.data
        for link, blocksize in zip(reversed(node.links), reversed(unixfs.blocksizes), strict=True):
            stack.append([link.cid, blocksize, None])


def _fetch(source: BlockSource, cid: CID) -> tuple[bytes, PBNode | None, UnixFSData | None]:
    return _load(source, cid)


def cat(source: BlockSource, cid: CID) -> Iterator[bytes]:
    """Stream the bytes of a UnixFS file (or a raw block), every block verified by ``source``.

    Raises:
        InvalidInputError: ``cid`` is a directory or a symlink.
        DecodeError: the DAG is malformed or its sizes are inconsistent.
        BlockNotFoundError, IntegrityError: from the block source.
    """
    first = _load(source, cid)
    kind = _kind(first[2])
    if kind != "file":
        raise InvalidInputError(f"expected a UnixFS file at {cid}, found a {kind}")
    return _cat_from(source, cid, first)


# -- directories ------------------------------------------------------------------------------
def _entries(source: BlockSource, cid: CID, node: PBNode, unixfs: UnixFSData) -> Iterator[tuple[str, PBLink]]:
    if unixfs.type == UnixFSType.HAMT_SHARD:

        def load(sub: CID) -> tuple[PBNode, UnixFSData]:
            if sub.codec != DAG_PB:
                raise DecodeError(f"expected a dag-pb HAMT sub-shard at {sub}, found {sub.codec_name}")
            return _decode(sub, source.get(sub))

        yield from hamt_entries(node, unixfs, load)
        return
    for link in node.links:
        if link.name is None:
            raise DecodeError(f"expected every link of directory {cid} to have a name, found one without")
        yield link.name, link


def _describe(source: BlockSource, cid: CID) -> tuple[Kind, int]:
    data, node, unixfs = _load(source, cid)
    kind = _kind(unixfs)
    if unixfs is None:
        return kind, len(data)
    if kind == "file":
        return kind, _file_size(unixfs)
    if kind == "symlink":
        return kind, len(unixfs.data or b"")
    return kind, _cumulative(data, node)


def links(source: BlockSource, cid: CID) -> list[tuple[str, PBLink]]:
    """The named links of a UnixFS directory (flat or HAMT-sharded), without loading the entries.

    Cheaper than :func:`ls` (no block of an entry is read); the links keep their Tsize, so a
    directory can be re-assembled from them (see ``add_directory``).

    Raises:
        InvalidInputError: ``cid`` is not a directory.
        DecodeError: the directory is malformed.
    """
    _, node, unixfs = _load(source, cid)
    if node is None or unixfs is None or unixfs.type not in _DIR_TYPES:
        raise InvalidInputError(f"expected a UnixFS directory at {cid}, found a {_kind(unixfs)}")
    return list(_entries(source, cid, node, unixfs))


def ls(source: BlockSource, cid: CID) -> list[DirEntry]:
    """List a UnixFS directory (flat or HAMT-sharded), sorted by name bytes.

    Each entry's root block is fetched to learn its kind and size.

    Raises:
        InvalidInputError: ``cid`` is not a directory.
        DecodeError: the directory is malformed.
    """
    _, node, unixfs = _load(source, cid)
    if node is None or unixfs is None or unixfs.type not in _DIR_TYPES:
        raise InvalidInputError(f"expected a UnixFS directory at {cid}, found a {_kind(unixfs)}")
    out = []
    for name, link in _entries(source, cid, node, unixfs):
        kind, size = _describe(source, link.cid)
        out.append(DirEntry(name, link.cid, size, kind))
    out.sort(key=lambda e: e.name.encode("utf-8"))
    return out


def stat(source: BlockSource, cid: CID) -> NodeInfo:
    """Describe a UnixFS node from its root block alone.

    Raises:
        DecodeError: the block is not valid UnixFS.
    """
    data, node, unixfs = _load(source, cid)
    kind = _kind(unixfs)
    cumulative = _cumulative(data, node)
    if unixfs is None:
        size = len(data)
    elif kind == "file":
        size = _file_size(unixfs)
    elif kind == "symlink":
        size = len(unixfs.data or b"")
    else:
        size = cumulative
    return NodeInfo(
        cid=cid,
        kind=kind,
        size=size,
        cumulative_size=cumulative,
        block_size=len(data),
        links=len(node.links) if node is not None else 0,
        sharded=unixfs is not None and unixfs.type == UnixFSType.HAMT_SHARD,
    )


# -- paths ------------------------------------------------------------------------------------
def split_path(text: str) -> tuple[str, list[str]]:
    """``CID/a/b`` (optionally ``/ipfs/CID/a/b``) -> ``("CID", ["a", "b"])``; empty segments dropped.

    Raises:
        InvalidInputError: a segment is ``.`` or ``..`` (UnixFS names never are).
    """
    text = text.removeprefix("/ipfs/")
    head, _, rest = text.partition("/")
    segments = [segment for segment in rest.split("/") if segment]
    for segment in segments:
        if segment in (".", ".."):
            raise InvalidInputError(
                f"expected plain path segments after the CID, found {segment!r} in {text!r}"
            )
    return head, segments


def resolve_path(source: BlockSource, root: CID, segments: list[str]) -> tuple[CID, list[CID]]:
    """Follow UnixFS directory entries from ``root`` (flat and HAMT-sharded directories).

    Symlinks are not followed (as the trustless gateway and ``ipfs resolve`` do not): a path
    through one is refused.

    Returns:
        The CID the path names, and every block CID read on the way to it (``root`` first,
        HAMT sub-shards included), which is what a client needs to verify the resolution.

    Raises:
        NotFoundError: an entry of the path does not exist.
        InvalidInputError: the path goes through something that is not a directory.
        DecodeError, BlockNotFoundError, IntegrityError: from the blocks.
    """
    cid = root
    traversed: list[CID] = []
    for depth, name in enumerate(segments):
        traversed.append(cid)
        _, node, unixfs = _load(source, cid)
        where = "/".join(segments[:depth]) or str(root)
        if node is None or unixfs is None or unixfs.type not in _DIR_TYPES:
            raise InvalidInputError(
                f"expected a directory at {where} to resolve {name!r} in it, found a {_kind(unixfs)}"
            )
        if unixfs.type == UnixFSType.HAMT_SHARD:

            def load(sub: CID) -> tuple[PBNode, UnixFSData]:
                if sub.codec != DAG_PB:
                    raise DecodeError(f"expected a dag-pb HAMT sub-shard at {sub}, found {sub.codec_name}")
                return _decode(sub, source.get(sub))

            link, shards = hamt_find(node, unixfs, name, load)
            traversed += shards
        else:
            link = next((lk for lk in node.links if lk.name == name), None)
        if link is None:
            raise NotFoundError(f"expected an entry {name!r} in {where}, found none")
        cid = link.cid
    return cid, traversed


# -- get --------------------------------------------------------------------------------------
def _safe_name(name: str, where: CID) -> str:
    if name in ("", ".", "..") or any(c in name for c in "/\\\x00"):
        raise UnsafePathError(f"expected a plain entry name in directory {where}, found {name!r}")
    return name


def _safe_link_target(raw: bytes, rel: str, cid: CID) -> str:
    try:
        target = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafePathError(f"expected a UTF-8 symlink target at {cid}, found {raw!r}") from None
    if not target or "\x00" in target or "\\" in target:
        raise UnsafePathError(
            f"expected a non-empty symlink target without NUL or '\\' at {cid}, found {target!r}"
        )
    if posixpath.isabs(target):
        raise UnsafePathError(
            f"refusing absolute symlink target {target!r} for {rel!r} ({cid}); "
            "write symlinks as stored with verbatim_symlinks (cats get --verbatim-symlinks)"
        )
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafePathError(
            f"refusing symlink {rel!r} -> {target!r}: it points outside the target ({cid}); "
            "write symlinks as stored with verbatim_symlinks (cats get --verbatim-symlinks)"
        )
    return target


def _write_file(
    source: BlockSource,
    cid: CID,
    first: tuple[bytes, PBNode | None, UnixFSData | None],
    path: str,
    progress: Progress | None,
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise DecodeError(f"expected unique entry names, found {path} twice (from {cid})") from None
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror or exc}") from exc
    # Blocks are fetched and verified ahead in the pool while this thread writes them in file
    # order (the _cat_from pipeline). Writing from worker threads at each block's offset was
    # measured slower: their concurrent pwrites to one file serialize in the kernel and stall the
    # workers, and a single sequential writer already keeps both cores busy with hashing.
    try:
        try:
            for piece in _cat_from(source, cid, first):
                view = memoryview(piece)
                while view:  # os.write may write less than asked (signals, a nearly full disk)
                    try:
                        view = view[os.write(fd, view) :]
                    except OSError as exc:
                        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
                if progress is not None:
                    progress(len(piece))
        finally:
            os.close(fd)
    except BaseException:
        # A file cut short by a bad block, a full disk or Ctrl-C must not be mistaken for the
        # content: remove it. We made it (O_EXCL) and nothing else has had a chance to use it.
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def get(
    source: BlockSource,
    cid: CID,
    target: Path,
    *,
    progress: Progress | None = None,
    verbatim_symlinks: bool = False,
) -> None:
    """Write a UnixFS file, symlink or directory tree at ``target``, never outside it.

    On any error the file being written is removed, so no truncated file is left behind;
    in a directory tree, the entries finished before the error stay.

    Symlinks are made after every file and directory exists, and files are opened with
    ``O_EXCL | O_NOFOLLOW``, so nothing is ever written through a link. By default a link
    that points outside ``target`` (absolute, ``..`` beyond the root, or through other links)
    is refused; with ``verbatim_symlinks`` every link is written as stored, as ``ipfs get``
    does (a link is data: writing it follows nothing).

    Args:
        source: where blocks come from (verified on read).
        cid: the root.
        target: must not exist, or be an empty directory when ``cid`` is a directory.
        progress: called with the number of file bytes written, as they are.
        verbatim_symlinks: write absolute and out-of-tree symlinks as stored instead of refusing.

    Raises:
        InvalidInputError: ``target`` exists (and is not an empty directory for a directory root).
        UnsafePathError: an entry name or symlink target would escape ``target``.
        DecodeError: the DAG is malformed (including duplicate names).
        StoreError: the file system refused a write (disk full, ...).
        BlockNotFoundError, IntegrityError: from the block source.
    """
    target = Path(target)
    first = _load(source, cid)
    kind = _kind(first[2])
    if os.path.lexists(target):
        empty_dir = target.is_dir() and not target.is_symlink() and not any(target.iterdir())
        if not (kind == "directory" and empty_dir):
            raise InvalidInputError(
                f"expected {target} not to exist (or be an empty directory for a directory), found it there"
            )
    root = os.path.abspath(target)
    symlinks: list[tuple[str, str | bytes]] = []
    if kind == "file":
        _write_file(source, cid, first, root, progress)
        return
    if kind == "symlink":
        unixfs = first[2]
        assert unixfs is not None
        if verbatim_symlinks:
            _make_symlinks(root, [("", _verbatim_target(unixfs.data or b"", cid))], check=False)
            return
        link_target = _safe_link_target(unixfs.data or b"", posixpath.basename(root), cid)
        # A lone symlink's target is relative to the target's parent, which is outside the tree.
        raise UnsafePathError(
            f"refusing to write a lone symlink ({link_target!r}) at {target}: it has no tree to stay in"
        )
    # Directory: walk with an explicit stack; the root directory is created first.
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {root}: {exc.strerror or exc}") from exc
    stack: list[tuple[CID, tuple[bytes, PBNode | None, UnixFSData | None], str]] = [(cid, first, "")]
    while stack:
        dir_cid, (_, node, unixfs), rel = stack.pop()
        assert node is not None and unixfs is not None
        for name, link in _entries(source, dir_cid, node, unixfs):
            child_rel = posixpath.join(rel, _safe_name(name, dir_cid))
            path = os.path.join(root, *child_rel.split("/"))
            loaded = _load(source, link.cid)
            child_kind = _kind(loaded[2])
            if child_kind == "file":
                _write_file(source, link.cid, loaded, path, progress)
            elif child_kind == "symlink":
                child_unixfs = loaded[2]
                assert child_unixfs is not None
                raw_target = child_unixfs.data or b""
                symlinks.append(
                    (
                        child_rel,
                        _verbatim_target(raw_target, link.cid)
                        if verbatim_symlinks
                        else _safe_link_target(raw_target, child_rel, link.cid),
                    )
                )
            else:
                try:
                    os.mkdir(path)
                except FileExistsError:
                    raise DecodeError(
                        f"expected unique entry names, found {child_rel!r} twice in {dir_cid}"
                    ) from None
                except OSError as exc:
                    raise StoreError(f"cannot create {path}: {exc.strerror or exc}") from exc
                stack.append((link.cid, loaded, child_rel))
    _make_symlinks(root, symlinks, check=not verbatim_symlinks)


def _verbatim_target(raw: bytes, cid: CID) -> bytes:
    # Bytes as stored (Kubo writes them so); only what no file system accepts is refused.
    if not raw or b"\x00" in raw:
        raise UnsafePathError(f"expected a non-empty symlink target without NUL at {cid}, found {raw!r}")
    return raw


def _make_symlinks(root: str, symlinks: list[tuple[str, str | bytes]], *, check: bool = True) -> None:
    # Created last, so no file or directory above was written through one of them.
    real_root = os.path.realpath(root)
    made: list[str] = []
    for rel, link_target in symlinks:
        path = os.path.join(root, *rel.split("/")) if rel else root
        if isinstance(link_target, bytes):
            link_target = os.fsdecode(link_target)
        try:
            os.symlink(link_target, path)
        except FileExistsError:
            raise DecodeError(f"expected unique entry names, found {rel!r} twice") from None
        except OSError as exc:
            raise StoreError(f"cannot create symlink {path}: {exc.strerror or exc}") from exc
        made.append(path)
    if not check:
        return
    # Lexically safe links can still escape through each other (a -> ., b -> a/../..): resolve.
    for path in made:
        resolved = os.path.realpath(path)
        if not (resolved == real_root or resolved.startswith(real_root.rstrip(os.sep) + os.sep)):
            for other in made:
                os.unlink(other)
            raise UnsafePathError(
                f"refusing symlink {os.path.relpath(path, root)!r}: through other symlinks it resolves to "
                f"{resolved}, outside the target (all symlinks were removed)"
            )
