"""The UnixFS importer: files and directory trees to dag-pb/raw blocks, CIDs identical to Kubo's.

Settings are Kubo's ``ipfs add --cid-version=1`` (raw leaves) by default and plain ``ipfs add``
with ``cid_version=0`` (dag-pb leaves): fixed 256 KiB chunks, balanced layout with at most
174 links per node, sha2-256. Directories are added like ``ipfs add -r``: entries whose name
starts with ``.`` are skipped (at any depth; the tree's root itself never is) unless
``hidden=True`` (``ipfs add -r -H``), and so is any entry an ``exclude`` pattern matches.
Symlinks are stored as Kubo stores them: a UnixFS Symlink node holding the link's target bytes
exactly as ``readlink`` returns them, whether relative, absolute or pointing outside the tree
(they are data; the importer never follows one). A symlink given as the path itself is read
with ``lstat`` as Kubo's argument handling does, so it too becomes a Symlink node.

Speed: the file is read with ``readinto`` into a few reused segment buffers, and the chunks of
each segment are hashed in a small thread pool (hashlib releases the GIL on large buffers)
while the next segment is read. Results are consumed in submission order, so the DAG and the
order of ``put_many`` calls are deterministic. Memory stays flat: a few segments plus at most
``max_links`` pending links per tree level.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import sqlite3
import stat as stat_module
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Final, NamedTuple

from ..errors import InvalidInputError, StoreError, UnsafePathError
from ._cid import CID, Block
from ._dagpb import pb_varint
from ._hamt import HAMT_FANOUT, build_hamt, build_hamt_sorted, hamt_key
from ._profiles import DEFAULT_PROFILE, ImportProfile, ShardStrategy, get_profile
from ._store import BlockStore
from ._unixfs_pb import AddResult

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_PROFILE",
    "HAMT_SHARDING_SIZE",
    "MAX_LINKS",
    "add_bytes",
    "add_path",
    "add_stream",
]

CHUNK_SIZE: Final = 262_144
"""Kubo's default chunker, ``size-262144``."""
MAX_LINKS: Final = 174
"""Kubo's balanced-layout limit of links per node."""
HAMT_SHARDING_SIZE: Final = 262_144
"""Kubo shards a directory whose estimated size (name bytes + CID bytes per link) exceeds this."""

_MAX_CHUNK = 1 << 20  # Kubo refuses chunkers above 1 MiB (blocks must stay below the 2 MiB limit)
_SEGMENT_BYTES = 4 << 20  # bytes read per pool task: big enough to amortise the thread handoff
_FD_SEGMENT_BYTES = 2 << 20  # per read+hash task: small enough to stay in a core's cache
_BATCH_BLOCKS = 4096  # one packed-store transaction (one sync) per batch: see _packstore._BATCH_BLOCKS
_BATCH_BYTES = 16 << 20

_V0_PREFIX: Final = b"\x12\x20"
_V1_RAW_PREFIX: Final = b"\x01\x55\x12\x20"
_V1_PB_PREFIX: Final = b"\x01\x70\x12\x20"
_DIR_DATA: Final = b"\x0a\x02\x08\x01"  # PBNode.Data = UnixFS{Type: Directory}

Progress = Callable[[int], None]


class _Node(NamedTuple):
    cid: bytes  # binary CID
    tsize: int  # cumulative DAG size, the parent's link Tsize
    filesize: int  # file bytes under this node (the parent's blocksizes entry)


class _Options(NamedTuple):
    cid_version: int
    chunk_size: int
    max_links: int
    shard_threshold: int = HAMT_SHARDING_SIZE
    shard_strategy: ShardStrategy = "links-bytes"


def _check_options(
    cid_version: int,
    chunk_size: int,
    max_links: int,
    shard_threshold: int = HAMT_SHARDING_SIZE,
    shard_strategy: ShardStrategy = "links-bytes",
) -> _Options:
    if cid_version not in (0, 1):
        raise InvalidInputError(f"expected cid_version 0 or 1, found {cid_version!r}")
    if not 1 <= chunk_size <= _MAX_CHUNK:
        raise InvalidInputError(f"expected a chunk size between 1 and {_MAX_CHUNK} bytes, found {chunk_size}")
    if max_links < 2:
        raise InvalidInputError(f"expected max_links of at least 2, found {max_links}")
    if shard_threshold < 0:
        raise InvalidInputError(f"expected a non-negative shard threshold, found {shard_threshold}")
    if shard_strategy not in ("links-bytes", "block-bytes"):
        raise InvalidInputError(
            f"expected shard strategy links-bytes or block-bytes, found {shard_strategy!r}"
        )
    return _Options(cid_version, chunk_size, max_links, shard_threshold, shard_strategy)


def _profile_options(profile: ImportProfile | str) -> _Options:
    if isinstance(profile, str):
        profile = get_profile(profile)
    if profile.raw_leaves != (profile.cid_version == 1) or profile.hamt_fanout != HAMT_FANOUT:
        # Kubo ties raw leaves to CIDv1; other combinations are not produced here.
        raise InvalidInputError(
            f"expected raw leaves exactly with CIDv1 and fanout {HAMT_FANOUT} in profile {profile.name!r}"
        )
    return _check_options(
        profile.cid_version,
        profile.chunk_size,
        profile.max_links,
        profile.hamt_threshold,
        profile.hamt_strategy,
    )


# -- the thread pool --------------------------------------------------------------------------
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(2, min(4, os.cpu_count() or 2))
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cats-unixfs-hash")
        return _pool


# -- block output -----------------------------------------------------------------------------
class _Sink:
    """Collects blocks for ``put_many`` in batches so the store can batch its fsyncs.

    A full batch is handed to one background writer thread while hashing goes on, so the
    store's durable writes overlap with reading and hashing. Batches are written one at a time
    and in order (children before parents); at most one is in flight, which bounds memory.
    ``close`` waits for the last write and re-raises any store error.
    """

    __slots__ = ("_batch", "_bytes", "_store", "_writer", "_writing")

    def __init__(self, store: BlockStore | None) -> None:
        self._store = store
        self._batch: list[Block] = []
        self._bytes = 0
        self._writer: ThreadPoolExecutor | None = None
        self._writing: Future[None] | None = None

    @property
    def keep(self) -> bool:
        return self._store is not None

    def add(self, cid: bytes, data: bytes) -> None:
        if self._store is None:
            return
        self._batch.append(Block._trusted(CID.from_bytes(cid), data))
        self._bytes += len(data)
        if len(self._batch) >= _BATCH_BLOCKS or self._bytes >= _BATCH_BYTES:
            self._submit()

    def _wait(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def _submit(self) -> None:
        assert self._store is not None
        batch, self._batch, self._bytes = self._batch, [], 0
        self._wait()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cats-unixfs-put")
        self._writing = self._writer.submit(self._store.put_many, batch)

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        # Failing already: let the in-flight write finish (no thread outlives the call) and
        # keep the original error; blocks already written are complete and harmless.
        try:
            self._wait()
        except Exception:  # noqa: S110  the caller's error is the one to report
            pass
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None

    def close(self) -> None:
        """Write what is left and wait for every write; raises the store's error, if any."""
        try:
            if self._store is not None and self._batch:
                batch, self._batch, self._bytes = self._batch, [], 0
                self._wait()
                self._store.put_many(batch)
            self._wait()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None


# -- leaves -----------------------------------------------------------------------------------
def _v0_leaf(chunk: bytes | memoryview) -> bytes:
    """A dag-pb leaf as plain ``ipfs add`` makes it: PBNode{Data: UnixFS{File, Data, filesize}}."""
    n = len(chunk)
    size = pb_varint(n)
    if n:
        unixfs_len = 3 + len(size) + n + 1 + len(size)
        return b"".join((b"\x0a", pb_varint(unixfs_len), b"\x08\x02\x12", size, chunk, b"\x18", size))
    return b"\x0a\x04\x08\x02\x18\x00"


_Leaf = tuple[bytes, "bytes | None", int, int]  # (binary CID, block when kept, file bytes, Tsize)


def _hash_leaves(view: memoryview, chunk_size: int, v0: bool, keep: bool) -> list[_Leaf]:
    """Hash every chunk of ``view`` (runs in the pool; hashlib releases the GIL)."""
    out: list[_Leaf] = []
    sha256 = hashlib.sha256
    for start in range(0, max(len(view), 1), chunk_size):
        piece = view[start : start + chunk_size]
        n = len(piece)
        if v0:
            block = _v0_leaf(piece)
            out.append((_V0_PREFIX + sha256(block).digest(), block if keep else None, n, len(block)))
        elif keep:
            block = bytes(piece)
            out.append((_V1_RAW_PREFIX + sha256(block).digest(), block, n, n))
        else:
            out.append((_V1_RAW_PREFIX + sha256(piece).digest(), None, n, n))
    return out


# -- the balanced layout ----------------------------------------------------------------------
class _FileBuilder:
    """Builds the balanced tree bottom-up as leaves stream in.

    A level is reduced into a parent as soon as it holds ``max_links`` nodes; at the end each
    partial level is reduced too (even to a single-link parent) unless it is the top level with
    one node, which is the root. That is exactly Kubo's "batch 174 per level, repeat" layout.
    """

    __slots__ = ("_levels", "_max_links", "_prefix", "_sink")

    def __init__(self, sink: _Sink, opts: _Options) -> None:
        self._sink = sink
        self._max_links = opts.max_links
        self._prefix = _V0_PREFIX if opts.cid_version == 0 else _V1_PB_PREFIX
        self._levels: list[list[_Node]] = [[]]

    def add(self, node: _Node) -> None:
        level = 0
        while True:
            nodes = self._levels[level]
            nodes.append(node)
            if len(nodes) < self._max_links:
                return
            self._levels[level] = []
            node = self._reduce(nodes)
            level += 1
            if level == len(self._levels):
                self._levels.append([])

    def finish(self) -> _Node:
        levels = self._levels
        for level, nodes in enumerate(levels):
            higher = any(levels[level + 1 :])
            if not higher and len(nodes) == 1:
                return nodes[0]
            if nodes:
                parent = self._reduce(nodes)
                if level + 1 == len(levels):
                    levels.append([])
                levels[level + 1].append(parent)
        raise AssertionError("unreachable: the importer always adds at least one leaf")

    def _reduce(self, children: list[_Node]) -> _Node:
        filesize = 0
        parts: list[bytes] = []
        sizes: list[bytes] = []
        tsize = 0
        for child in children:
            body = b"".join(
                (b"\x0a", pb_varint(len(child.cid)), child.cid, b"\x12\x00\x18", pb_varint(child.tsize))
            )
            parts += (b"\x12", pb_varint(len(body)), body)
            sizes += (b"\x20", pb_varint(child.filesize))
            filesize += child.filesize
            tsize += child.tsize
        data = b"".join((b"\x08\x02\x18", pb_varint(filesize), *sizes))
        parts += (b"\x0a", pb_varint(len(data)), data)
        block = b"".join(parts)
        cid = self._prefix + hashlib.sha256(block).digest()
        self._sink.add(cid, block)
        return _Node(cid, len(block) + tsize, filesize)


# -- files ------------------------------------------------------------------------------------
def _fill(readinto: Callable[[memoryview], int | None], view: memoryview) -> int:
    """Fill ``view`` unless the stream ends first; short reads (pipes, sockets) are retried."""
    got = 0
    total = len(view)
    while got < total:
        n = readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _import_small(data: bytes, sink: _Sink, opts: _Options) -> _Node:
    """A file of at most one chunk: the leaf is the root."""
    if opts.cid_version == 0:
        block = _v0_leaf(data)
        cid = _V0_PREFIX + hashlib.sha256(block).digest()
    else:
        block = data
        cid = _V1_RAW_PREFIX + hashlib.sha256(block).digest()
    sink.add(cid, block)
    return _Node(cid, len(block), len(data))


def _import_stream(
    readinto: Callable[[memoryview], int | None], sink: _Sink, opts: _Options, progress: Progress | None
) -> _Node:
    chunk = opts.chunk_size
    seg_size = max(1, _SEGMENT_BYTES // chunk) * chunk
    v0 = opts.cid_version == 0
    keep = sink.keep
    builder = _FileBuilder(sink, opts)
    pool: ThreadPoolExecutor | None = None
    depth = 4  # segments in flight: enough to keep every worker busy while the next is read
    buffers: list[bytearray] = []
    free: list[int] = []
    pending: deque[tuple[Future[list[_Leaf]], int]] = deque()

    started = False  # a leaf was produced: an empty segment now is the end, not an empty file

    def consume(leaves: list[_Leaf]) -> None:
        for cid, block, n, tsize in leaves:
            if block is not None:
                sink.add(cid, block)
            builder.add(_Node(cid, tsize, n))

    def drain_one() -> None:
        future, index = pending.popleft()
        consume(future.result())
        free.append(index)

    try:
        while True:
            if not free:
                if len(buffers) < depth + 1:
                    buffers.append(bytearray(seg_size))
                    free.append(len(buffers) - 1)
                else:
                    drain_one()
            index = free.pop()
            view = memoryview(buffers[index])
            n = _fill(readinto, view)
            if progress is not None and n:
                progress(n)
            eof = n < seg_size
            if n == 0 and started:
                free.append(index)
                break
            if eof and not started:
                # The whole stream fit in one segment: hash inline, no thread handoff.
                consume(_hash_leaves(view[:n], chunk, v0, keep))
                free.append(index)
                break
            if pool is None:
                pool = _get_pool()
            pending.append((pool.submit(_hash_leaves, view[:n], chunk, v0, keep), index))
            started = True
            while len(pending) > depth:
                drain_one()
            if eof:
                break
        while pending:
            drain_one()
    finally:
        for future, _ in pending:
            future.cancel()
        for future, _ in pending:
            if not future.cancelled():
                future.exception()  # wait, so no worker still reads a buffer we drop
    return builder.finish()


def _readinto_of(stream: BinaryIO) -> Callable[[memoryview], int | None]:
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto  # type: ignore[no-any-return]

    def fallback(view: memoryview) -> int:
        data = stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    return fallback


def _pread_hash(
    fd: int, offset: int, buf: bytearray, chunk: int, v0: bool, keep: bool
) -> tuple[int, list[_Leaf]]:
    """Read one segment at ``offset`` and hash its chunks, on the same core (data stays in cache)."""
    view = memoryview(buf)
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            break
        got += n
    return got, _hash_leaves(view[:got], chunk, v0, keep) if got else []


def _import_fd(fd: int, sink: _Sink, opts: _Options, progress: Progress | None) -> _Node:
    """Import a regular file: each pool task reads (``preadv``, GIL released) and hashes a segment.

    Reading and hashing in the same task keeps the segment in that core's cache, which matters
    more than overlap when the other core is busy. Tasks run ahead by a few segments; results
    are consumed in offset order, and the first short segment marks the end of the file.
    """
    chunk = opts.chunk_size
    seg_size = max(1, _FD_SEGMENT_BYTES // chunk) * chunk
    v0 = opts.cid_version == 0
    keep = sink.keep
    builder = _FileBuilder(sink, opts)
    pool = _get_pool()
    depth = pool._max_workers + 2
    buffers = [bytearray(seg_size) for _ in range(depth)]
    pending: deque[tuple[Future[tuple[int, list[_Leaf]]], int]] = deque()
    offset = 0
    started = False
    try:
        for index in range(depth):
            pending.append((pool.submit(_pread_hash, fd, offset, buffers[index], chunk, v0, keep), index))
            offset += seg_size
        while pending:
            future, index = pending.popleft()
            n, leaves = future.result()
            if n == 0 and not started:
                leaves = _hash_leaves(memoryview(b""), chunk, v0, keep)  # an empty file: one empty leaf
            started = True
            for cid, block, size, tsize in leaves:
                if block is not None:
                    sink.add(cid, block)
                builder.add(_Node(cid, tsize, size))
            if progress is not None and n:
                progress(n)
            if n < seg_size:
                break
            pending.append((pool.submit(_pread_hash, fd, offset, buffers[index], chunk, v0, keep), index))
            offset += seg_size
    finally:
        for future, _ in pending:
            future.cancel()
        for future, _ in pending:
            if not future.cancelled():
                future.exception()  # wait, so no task still writes into a buffer we drop
    return builder.finish()


_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
)


def _add_file(path: str, sink: _Sink, opts: _Options, progress: Progress | None) -> _Node:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        size = os.fstat(fd).st_size
        if size <= opts.chunk_size:
            # Small files (the common case in code trees): one read sized by fstat, no big
            # buffer. A short read is the end of a regular file; one byte more than the size
            # notices a file that grew meanwhile, which then takes the general path.
            want = size + 1
            head = os.read(fd, want)
            if len(head) < want:
                if progress is not None and head:
                    progress(len(head))
                return _import_small(head, sink, opts)
        if hasattr(os, "preadv"):
            return _import_fd(fd, sink, opts, progress)
        os.lseek(fd, 0, os.SEEK_SET)
        with open(fd, "rb", buffering=0, closefd=False) as f:
            return _import_stream(f.readinto, sink, opts, progress)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


# -- directories ------------------------------------------------------------------------------
def _flat_directory(links: list[tuple[bytes, _Node]]) -> tuple[bytes, int]:
    parts: list[bytes] = []
    tsize = 0
    for raw, node in links:
        body = b"".join(
            (b"\x0a", pb_varint(len(node.cid)), node.cid, b"\x12", pb_varint(len(raw)), raw, b"\x18")
        ) + pb_varint(node.tsize)
        parts += (b"\x12", pb_varint(len(body)), body)
        tsize += node.tsize
    parts.append(_DIR_DATA)
    return b"".join(parts), tsize


def _directory_node(links: list[tuple[bytes, _Node]], sink: _Sink, opts: _Options) -> _Node:
    """One directory from its named entries: a single dag-pb block, or a HAMT when it is large."""
    links = sorted(links, key=lambda item: item[0])
    prefix = _V0_PREFIX if opts.cid_version == 0 else _V1_PB_PREFIX
    # Name + CID bytes is Kubo's (boxo's) estimate and a lower bound of the encoded size, so
    # past the threshold the flat block is never encoded (a large directory is a HAMT).
    estimate = sum(len(raw) + len(node.cid) for raw, node in links)
    block, tsize = b"", 0
    if estimate <= opts.shard_threshold:
        block, tsize = _flat_directory(links)
        if opts.shard_strategy == "block-bytes":
            estimate = len(block)  # IPIP-499 unixfs-v1-2025: the exact encoded size
    # Strictly above the threshold, as current boxo and the npm importer do (older go-unixfs and
    # boxo releases used >=: a directory exactly at the threshold was sharded there).
    if estimate > opts.shard_threshold:
        cid, hamt_tsize = build_hamt(
            [(raw, node.cid, node.tsize) for raw, node in links], _emitter(sink, opts)
        )
        return _Node(cid, hamt_tsize, 0)
    cid = prefix + hashlib.sha256(block).digest()
    sink.add(cid, block)
    return _Node(cid, len(block) + tsize, 0)


def _emitter(sink: _Sink, opts: _Options) -> Callable[[bytes], tuple[bytes, int]]:
    prefix = _V0_PREFIX if opts.cid_version == 0 else _V1_PB_PREFIX

    def emit(block: bytes) -> tuple[bytes, int]:
        cid = prefix + hashlib.sha256(block).digest()
        sink.add(cid, block)
        return cid, len(block)

    return emit


_SPILL_ENTRIES = 65536
"""Entries a directory keeps in memory once it is sure to be sharded; beyond, they go to disk."""
_SPILL_BATCH = 1024


class _DirBuilder:
    """Takes a directory's entries one at a time, in any order, and builds its node.

    A directory whose name + CID bytes stay within the shard threshold is one block, so its
    entries are bounded by the threshold and kept in memory (sorted by name at the end, as
    today). Once that lower bound of the size estimate exceeds the threshold the directory is
    certainly a HAMT under either strategy; past ``spill_entries`` entries the builder then
    moves them to a private temporary SQLite database keyed by the HAMT's murmur3 key, and
    builds the shard tree from the key-ordered stream (:func:`build_hamt_sorted`), so memory
    stays flat whatever the entry count. SQLite deletes the database when it is closed.
    """

    __slots__ = ("_db", "_estimate", "_links", "_opts", "_pending", "_seen", "_sink", "_spill_at", "_unique")

    def __init__(self, sink: _Sink, opts: _Options, *, unique: bool, spill_entries: int = _SPILL_ENTRIES):
        self._sink = sink
        self._opts = opts
        self._unique = unique  # names from a caller, not a filesystem: check duplicates
        self._spill_at = spill_entries
        self._links: list[tuple[bytes, _Node]] = []
        self._seen: set[bytes] = set()
        self._estimate = 0  # name + CID bytes: a lower bound of both strategies' estimates
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[bytes, bytes, bytes, int]] = []

    def add(self, raw: bytes, node: _Node, name: str) -> None:
        """One entry; ``name`` is only for the duplicate-name error."""
        if self._db is not None:
            self._pending.append((hamt_key(raw), raw, node.cid, node.tsize))
            if len(self._pending) >= _SPILL_BATCH:
                self._flush(name)
            return
        if self._unique:
            if raw in self._seen:
                raise InvalidInputError(f"expected unique entry names in a directory, found {name!r} twice")
            self._seen.add(raw)
        self._links.append((raw, node))
        self._estimate += len(raw) + len(node.cid)
        if self._estimate > self._opts.shard_threshold and len(self._links) > self._spill_at:
            self._spill(name)

    def _spill(self, name: str) -> None:
        # "" is SQLite's private temporary database: on disk, removed when the connection closes.
        db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-8192")  # KiB: the page cache bounds this builder's memory
        db.execute("PRAGMA temp_store=FILE")
        db.execute(
            "CREATE TABLE e (k BLOB NOT NULL, name BLOB NOT NULL UNIQUE, cid BLOB NOT NULL, t INTEGER)"
        )
        db.execute("BEGIN")
        self._db = db
        self._pending = [(hamt_key(raw), raw, node.cid, node.tsize) for raw, node in self._links]
        self._links = []
        self._seen = set()
        self._flush(name)

    def _flush(self, name: str) -> None:
        assert self._db is not None
        try:
            self._db.executemany("INSERT INTO e VALUES (?, ?, ?, ?)", self._pending)
        except sqlite3.IntegrityError:
            # The UNIQUE constraint on names: only a caller's list can repeat one.
            raise InvalidInputError(
                f"expected unique entry names in a directory, found a name twice (at or before {name!r})"
            ) from None
        self._pending = []

    def finish(self) -> _Node:
        """Build the directory (flat block or HAMT) and emit its blocks."""
        if self._db is None:
            return _directory_node(self._links, self._sink, self._opts)
        self._flush("the last entry")
        # Ordered by key, then name: a tie on all 64 bits reaches the LimitError in the builder.
        rows = self._db.execute("SELECT k, name, cid, t FROM e ORDER BY k, name")
        cid, tsize = build_hamt_sorted(rows, _emitter(self._sink, self._opts))
        return _Node(cid, tsize, 0)

    def close(self) -> None:
        """Drop the temporary database, if any (it is deleted from disk)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> _DirBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_name(name: str, where: str) -> bytes:
    if name in ("", ".", "..") or "/" in name or "\x00" in name:
        raise UnsafePathError(f"expected a plain entry name in {where}, found {name!r}")
    raw = os.fsencode(name)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"expected UTF-8 entry names (UnixFS names are strings), found {raw!r} in {where}"
        ) from None
    return raw


def _symlink_node(target: bytes, sink: _Sink, opts: _Options) -> _Node:
    unixfs = b"\x08\x04\x12" + pb_varint(len(target)) + target
    block = b"\x0a" + pb_varint(len(unixfs)) + unixfs
    prefix = _V0_PREFIX if opts.cid_version == 0 else _V1_PB_PREFIX
    cid = prefix + hashlib.sha256(block).digest()
    sink.add(cid, block)
    return _Node(cid, len(block), 0)


def _is_hidden(name: str) -> bool:
    """Kubo's rule (boxo ``files.Filter``): a name starting with a dot is hidden."""
    return name.startswith(".")


class _DirWalker:
    def __init__(
        self,
        sink: _Sink,
        opts: _Options,
        exclude: Sequence[str],
        progress: Progress | None,
        hidden: bool,
    ):
        self.sink = sink
        self.opts = opts
        self.exclude = tuple(exclude)
        self.progress = progress
        self.hidden = hidden
        self.size = 0
        self.skipped_hidden = 0

    def _count(self, n: int) -> None:
        self.size += n
        if self.progress is not None:
            self.progress(n)

    def add_dir(self, path: str) -> _Node:
        # Entries stream from scandir into the builder; only the names of subdirectories are
        # kept until the listing is closed (so one directory fd is open at a time, not one per
        # level of the tree), then each is added in name order.
        subdirs: list[tuple[bytes, str]] = []
        with _DirBuilder(self.sink, self.opts, unique=False) as builder:
            try:
                with os.scandir(path) as listing:
                    for entry in listing:
                        name = entry.name
                        if not self.hidden and _is_hidden(name):
                            self.skipped_hidden += 1
                            continue
                        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude):
                            continue
                        raw_name = _check_name(name, path)
                        if entry.is_symlink():
                            node = _add_symlink(entry.path, self.sink, self.opts)
                        elif entry.is_dir(follow_symlinks=False):
                            subdirs.append((raw_name, name))
                            continue
                        elif entry.is_file(follow_symlinks=False):
                            node = _add_file(entry.path, self.sink, self.opts, self._count)
                        else:
                            raise InvalidInputError(
                                "expected a regular file, directory or symlink, found a special file"
                                f" at {entry.path}"
                            )
                        builder.add(raw_name, node, name)
            except StoreError:
                raise  # a file's own error, already precise
            except OSError as exc:
                raise StoreError(f"cannot list directory {path}: {exc.strerror or exc}") from exc
            subdirs.sort()
            for raw_name, name in subdirs:
                builder.add(raw_name, self.add_dir(os.path.join(path, name)), name)
            return builder.finish()


def _add_symlink(path: str, sink: _Sink, opts: _Options) -> _Node:
    # The target is data, stored byte for byte as Kubo does; it is never resolved or followed.
    try:
        target = os.readlink(os.fsencode(path))
    except OSError as exc:
        raise StoreError(f"cannot read symlink {path}: {exc.strerror or exc}") from exc
    return _symlink_node(target, sink, opts)


# -- public API -------------------------------------------------------------------------------
def _resolve_options(
    profile: ImportProfile | str | None,
    cid_version: int,
    chunk_size: int,
    max_links: int,
    shard_threshold: int,
) -> _Options:
    if profile is None:
        return _check_options(cid_version, chunk_size, max_links, shard_threshold)
    custom = (cid_version, chunk_size, max_links, shard_threshold) != (
        1,
        CHUNK_SIZE,
        MAX_LINKS,
        HAMT_SHARDING_SIZE,
    )
    if custom:
        raise InvalidInputError("expected either a profile or individual import settings, found both")
    return _profile_options(profile)


def add_path(
    path: str | os.PathLike[str],
    store: BlockStore | None,
    *,
    cid_version: int = 1,
    exclude: Sequence[str] = (),
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
    max_links: int = MAX_LINKS,
    shard_threshold: int = HAMT_SHARDING_SIZE,
    hidden: bool = False,
    profile: ImportProfile | str | None = None,
) -> AddResult:
    """Add a file, directory tree or symlink, as ``ipfs add [-r] [-H] [--cid-version=1]`` would.

    ``path`` is read with ``lstat`` as Kubo reads its arguments: a symlink given as ``path``
    becomes a UnixFS Symlink node (write ``path/`` to add the directory it points to). Inside a
    directory, symlinks become Symlink nodes holding their target verbatim, and entries whose
    name starts with ``.`` are skipped unless ``hidden`` (the result counts them).

    Args:
        path: a regular file, a directory or a symlink.
        store: where blocks go; ``None`` only computes the CID.
        cid_version: 1 (raw leaves, Kubo's ``--cid-version=1``) or 0 (plain ``ipfs add``).
        exclude: fnmatch patterns (case-sensitive) matched against each entry name in the tree.
        progress: called with the number of content bytes consumed, as they are.
        chunk_size: fixed chunk size (Kubo's ``--chunker=size-N``); Kubo's default.
        max_links: links per node of the balanced layout; Kubo's 174 unless testing.
        shard_threshold: a directory whose names + CIDs exceed this many bytes becomes a HAMT
            (Kubo's ``Import.UnixFSHAMTDirectorySizeThreshold``, 256 KiB).
        hidden: include entries whose name starts with a dot (Kubo's ``-H/--hidden``).
        profile: a named profile (see ``PROFILES``) instead of the four settings above.

    Returns:
        The root CID, the content bytes, the cumulative DAG size and how many hidden entries
        were skipped.

    Raises:
        UnsafePathError: an entry name is unsafe.
        InvalidInputError: special files, non-UTF-8 names, bad options, nothing at ``path``.
        StoreError: the tree cannot be read.
    """
    opts = _resolve_options(profile, cid_version, chunk_size, max_links, shard_threshold)
    text = os.fspath(path)
    try:
        st = os.lstat(text)
    except FileNotFoundError:
        raise InvalidInputError(f"expected a file or directory to add, found nothing at {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    skipped = 0
    with _Sink(store) as sink:
        if stat_module.S_ISLNK(st.st_mode):
            node = _add_symlink(text, sink, opts)
            size = 0
        elif stat_module.S_ISDIR(st.st_mode):
            walker = _DirWalker(sink, opts, exclude, progress, hidden)
            node = walker.add_dir(text)
            size = walker.size
            skipped = walker.skipped_hidden
        elif stat_module.S_ISREG(st.st_mode):
            node = _add_file(text, sink, opts, progress)
            size = node.filesize
        else:
            raise InvalidInputError(f"expected a regular file or directory, found a special file at {path}")
    return AddResult(CID.from_bytes(node.cid), size, node.tsize, skipped)


def add_directory(
    entries: Iterable[tuple[str, CID, int]],
    store: BlockStore | None,
    *,
    cid_version: int = 1,
    shard_threshold: int = HAMT_SHARDING_SIZE,
    profile: ImportProfile | str | None = None,
) -> AddResult:
    """A UnixFS directory of existing DAGs, built as ``ipfs add -r`` would build it.

    Used to assemble a directory from entries already in the store (e.g. the merged output of
    map-mode tasks) without materializing them. Large directories become HAMTs exactly as Kubo
    shards them.

    Args:
        entries: ``(name, CID, Tsize)`` per entry (Tsize: the entry's cumulative DAG size, as in
            the dag-pb link that pointed to it).
        store: where the directory blocks go; ``None`` only computes the CID.
        cid_version: 1 or 0, as for :func:`add_path`.
        shard_threshold: as for :func:`add_path`.
        profile: as for :func:`add_path` (only its CID version and HAMT settings matter here).

    Raises:
        UnsafePathError: an entry name is unsafe (``.``, ``..``, ``/``, NUL, empty).
        InvalidInputError: two entries share a name, or the options are invalid.
    """
    opts = _resolve_options(profile, cid_version, CHUNK_SIZE, MAX_LINKS, shard_threshold)
    with _Sink(store) as sink, _DirBuilder(sink, opts, unique=True) as builder:
        for name, cid, tsize in entries:
            builder.add(_check_name(name, "a directory being assembled"), _Node(cid.buffer, tsize, 0), name)
        node = builder.finish()
    return AddResult(CID.from_bytes(node.cid), 0, node.tsize)


def add_stream(
    stream: BinaryIO,
    store: BlockStore | None,
    *,
    cid_version: int = 1,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
    max_links: int = MAX_LINKS,
) -> AddResult:
    """Add the bytes of a binary stream as one UnixFS file (see :func:`add_path` for the options).

    The stream is read with ``readinto`` into reused buffers when it has one, so memory stays
    flat for any size.
    """
    opts = _check_options(cid_version, chunk_size, max_links)
    with _Sink(store) as sink:
        node = _import_stream(_readinto_of(stream), sink, opts, progress)
    return AddResult(CID.from_bytes(node.cid), node.filesize, node.tsize)


def add_bytes(
    data: bytes,
    store: BlockStore | None,
    *,
    cid_version: int = 1,
    chunk_size: int = CHUNK_SIZE,
    max_links: int = MAX_LINKS,
) -> CID:
    """The CID of ``data`` added as one UnixFS file (blocks go to ``store`` unless it is None)."""
    opts = _check_options(cid_version, chunk_size, max_links)
    with _Sink(store) as sink:
        if len(data) <= opts.chunk_size:
            node = _import_small(bytes(data), sink, opts)
        else:
            node = _import_stream(io.BytesIO(data).readinto, sink, opts, None)
    return CID.from_bytes(node.cid)
