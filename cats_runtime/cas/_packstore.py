"""The repository's block store: small blocks packed in LMDB, large ones as files.

Layout under ``root`` (a repository's ``blocks/``)::

    packed/data.mdb, packed/lock.mdb   LMDB: key = CIDv1 bytes, value = block bytes
    SHARDING, <SH>/<KEY>.data          FSBlockStore: blocks over ``pack_limit`` bytes, and
                                       every block of a layout-1 repository (read in place)

Why LMDB (measured in benchmarks/bench_block_engines.py, numbers in docs/store.md): durable
batched puts of 1-4 KiB blocks run 2.5-5x faster than SQLite BLOBs and 15-20x faster than one
file per block, verified reads 6-10x faster than either; one file holds millions of blocks
instead of one inode each. LMDB is crash-safe by construction (copy-on-write B+tree, the meta
page is written and synced after the data pages), serializes writers across processes with a
robust mutex in ``lock.mdb`` (a writer killed with kill -9 releases it) and lets readers run
without locks.

Its rules, which this module keeps:

* An environment is opened **once per process** (opening the same file twice in one process
  breaks its locks): :func:`_env` keeps one per path and process.
* It is never used **after fork**: the registry records the opening pid, and a forked child
  that reaches for its parent's environment gets a StoreError instead (LMDB forbids the use,
  closing it would free the parent's reader slots, and py-lmdb refuses a second open in the
  same process image). Ray workers, the CLI and the node are spawned processes; the sandbox's
  forked children never open the store.
* Read transactions are short (a batch of keys at a time when iterating), so a long
  iteration does not pin old pages and make the file grow.
* The map (address space, not disk) starts modest, at the larger of 1 GiB
  (``CATS_LMDB_MAP_GIB``) and twice the file, and **grows on demand**: a write transaction
  that finds it full (``MDB_MAP_FULL``) is aborted, the map grows (at least doubling, enough
  for the batch) and the batch runs again, so a batch is still all or nothing and only a full
  disk stops a write. A process whose map another process outgrew (``MDB_MAP_RESIZED`` at
  the start of any transaction) adopts the file's size and goes on.
* The map is only **changed with no transaction of the process open** (LMDB's rule for
  ``mdb_env_set_mapsize``; py-lmdb also cancels the other threads' transactions, whose
  ``buffers=True`` memoryviews would then point into unmapped memory): every transaction goes
  through the environment's gate (:class:`_Env`: shared for transactions, exclusive for a
  remap), and transactions never nest in a thread.

Every read is re-hashed against its CID (:class:`~cats_runtime.errors.CorruptBlockError`).
:meth:`PackedBlockStore.put_many` commits one LMDB transaction per batch, synced at commit:
after a crash each batch is there entirely or not at all.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import lmdb

from ..errors import BlockNotFoundError, CorruptBlockError, InvalidInputError, StoreError
from ._blockstore import CorruptBlock, FSBlockStore
from ._cid import CID, HASH_NAMES, IDENTITY, Block, compute_digest

__all__ = ["PACK_LIMIT", "MigrateResult", "PackedBlockStore"]

PACK_LIMIT: Final = 1024 * 1024
"""Blocks of at most this many bytes are packed; larger ones are files (see docs/store.md)."""

# One transaction per batch: large enough that the two syncs of a commit are amortised over
# many blocks, small enough that a batch's memory stays bounded.
_BATCH_BLOCKS: Final = 4096
_BATCH_BYTES: Final = 32 * 1024 * 1024
# Large blocks are handed to the file store in groups of this many bytes.
_FILE_BATCH_BYTES: Final = 64 * 1024 * 1024
# Keys read per read transaction while iterating.
_SCAN_CHUNK: Final = 1024
# The map's starting size: the larger of this and twice the data file's size at open. It is
# address space, not disk (sparse: the file grows with the data) and it is reserved for the
# process's life, so it starts modest (1 TiB per open store ran a process opening many homes out
# of its 128 TiB) and grows on demand (_Env.write). CATS_LMDB_MAP_GIB sets a larger start for a
# process that knows it will write a lot (each growth is a remap that waits for the process's
# transactions to end). Not Final: the tests lower it to force growth.
_MAP_SIZE = int(os.environ.get("CATS_LMDB_MAP_GIB", "1")) << 30
# Map sizes are rounded up to this (a multiple of any OS page size).
_MAP_ALIGN: Final = 1 << 20
# A growth at least doubles the map, but adds at most this much address space at once.
_MAX_GROWTH: Final = 64 << 30
# Remaps one write may wait for before it gives up (each one at least doubles the map or adopts
# another process's growth, so only a pathological race gets near this).
_MAX_REMAPS: Final = 64
# How often a remap looks whether this process's transactions have ended.
_DRAIN_POLL: Final = 0.0002
_MAX_READERS: Final = 1024
_PACKED_DIR: Final = "packed"

_T = TypeVar("_T")


def _round_up(size: int) -> int:
    return -(-size // _MAP_ALIGN) * _MAP_ALIGN


class _Env:
    """This process's one LMDB environment for a path, and the gate its map is changed behind.

    ``mdb_env_set_mapsize`` may only be called when no transaction of the process is active
    (LMDB does not check; py-lmdb aborts the other threads' transactions under them, and a
    memoryview a reader took with ``buffers=True`` would point into unmapped memory). So every
    transaction goes through :meth:`enter` / :meth:`leave` (shared) and every remap through
    :meth:`_remap` (exclusive). A thread never remaps while it holds a transaction: the read
    paths leave the gate before they adopt, a writer aborts its transaction and leaves the gate
    (:meth:`_abort`) before it grows the map, and transactions never nest. Writers of the
    process take turns outside the gate (``_write_lock``), so none waits inside it for LMDB's
    writer lock while the one holding that lock waits for the gate to drain.

    The shared side is a list append and a flag check, no lock (the hot path of ``get``). It is
    sound under the GIL, which orders them: a remap raises ``resizing`` first and then waits for
    ``active`` to empty, so a transaction either entered before (and is waited for) or sees the
    flag (and waits on ``_remap_lock`` until the remap is done). A free-threaded build would need
    a lock around the enter.
    """

    __slots__ = (
        "_remap_lock",
        "_write_lock",
        "active",
        "broken",
        "lmdb",
        "map_size",
        "path",
        "pid",
        "psize",
        "resizing",
    )

    def __init__(self, env: lmdb.Environment, path: Path) -> None:
        self.lmdb = env
        self.path = path
        self.pid = os.getpid()
        self.psize: int = env.stat()["psize"]
        self.map_size: int = env.info()["map_size"]
        self.active: list[None] = []  # one entry per transaction in flight in this process
        self.resizing = False
        self.broken = ""  # why the environment cannot be used any more (a failed remap)
        self._remap_lock = threading.Lock()
        self._write_lock = threading.Lock()

    # -- the shared side ------------------------------------------------------------------
    def enter(self) -> None:
        """Hold the gate shared: no remap starts until :meth:`leave`."""
        active = self.active
        while True:
            active.append(None)
            if not self.resizing:
                return
            active.pop()
            with self._remap_lock:  # wait for the remap to end
                if self.broken:
                    raise StoreError(self.broken)

    def leave(self) -> None:
        """Release the shared hold taken by :meth:`enter`."""
        self.active.pop()

    def get(self, key: bytes) -> bytes | None:
        """The value under ``key`` (a copy), or None: one read transaction (the hot path)."""
        active = self.active
        active.append(None)  # enter(), inlined: a method call costs more than the gate
        try:
            if not self.resizing:
                with self.lmdb.begin() as txn:
                    data: bytes | None = txn.get(key)
                    return data
        except lmdb.MapResizedError:
            pass  # another process grew the file past this map: adopt it below
        finally:
            active.pop()
        with self.read() as txn:
            found: bytes | None = txn.get(key)
            return found

    def contains(self, key: bytes) -> bool:
        """True when ``key`` is stored (the value is not copied)."""
        active = self.active
        active.append(None)
        try:
            if not self.resizing:
                with self.lmdb.begin(buffers=True) as txn:
                    return txn.get(key) is not None
        except lmdb.MapResizedError:
            pass
        finally:
            active.pop()
        with self.read_views() as txn:
            return txn.get(key) is not None

    def read(self) -> AbstractContextManager[lmdb.Transaction[bytes]]:
        """A read transaction through the gate, adopting another process's growth if needed."""
        return self._read(buffers=False)

    def read_views(self) -> AbstractContextManager[lmdb.Transaction[memoryview]]:
        """Like :meth:`read`, its values memoryviews into the map: valid inside the block only."""
        return self._read(buffers=True)

    @contextmanager
    def _read(self, *, buffers: bool) -> Iterator[Any]:
        for _ in range(_MAX_REMAPS):
            self.enter()
            try:
                txn = self.lmdb.begin(buffers=True) if buffers else self.lmdb.begin()
            except lmdb.MapResizedError:
                self.leave()
                self._adopt()
                continue
            except BaseException:
                self.leave()
                raise
            try:
                yield txn
            finally:
                try:
                    txn.abort()
                finally:
                    self.leave()
            return
        raise StoreError(self._chasing())

    def write(self, work: Callable[[lmdb.Transaction], _T], *, size: int) -> _T:
        """Run ``work`` in one write transaction and commit it, growing the map as needed.

        ``work`` may run more than once: a transaction that fills the map is aborted (nothing
        of it is written), the map grows and ``work`` runs again in a new transaction, so it
        must not consume its input or keep state across runs.

        Args:
            work: what to do in the transaction; its result is returned once committed.
            size: about how many bytes ``work`` writes (to grow enough in one step).

        Raises:
            lmdb.Error: the transaction failed for another reason (a full disk: ``DiskError``,
                or an ``Error`` for a write cut short).
            StoreError: the map cannot be grown.
        """
        # One write transaction of this process at a time (LMDB allows one anyway), taken
        # outside the gate: no thread waits for LMDB's writer lock inside it while this one,
        # holding that lock, waits for the gate to drain (see _abort).
        with self._write_lock:
            for _ in range(_MAX_REMAPS):
                self.enter()
                seen = self.map_size  # read inside the gate: no remap can change it before leave()
                try:
                    txn = self.lmdb.begin(write=True, buffers=True)
                except BaseException as exc:
                    self.leave()
                    if not isinstance(exc, lmdb.MapResizedError):
                        raise
                    self._adopt()  # another process grew the file past this map
                    continue
                try:
                    result = work(txn)
                except BaseException as exc:
                    self._abort(txn)
                    if not isinstance(exc, lmdb.MapFullError):
                        raise
                    self._remap(self._grown(seen, size))
                    continue
                try:
                    txn.commit()  # when it fails, LMDB has aborted the transaction
                    return result
                except lmdb.MapFullError:
                    pass  # the commit's own pages (the free list) did not fit
                finally:
                    self.leave()
                self._remap(self._grown(seen, size))
            raise StoreError(self._chasing())

    # -- the exclusive side ---------------------------------------------------------------
    def _grown(self, seen: int, size: int) -> Callable[[int], int]:
        """The growth after a transaction found a map of ``seen`` bytes full."""

        def target(used: int) -> int:
            if self.map_size > seen:
                return 0  # grown by another thread meanwhile: try with that first
            # Twice the batch: values over half a page take whole overflow pages, and the
            # copy-on-write tree writes new branch pages beside the old ones.
            return max(self.map_size + min(self.map_size, _MAX_GROWTH), used + 2 * size + _MAP_ALIGN)

        return target

    def _adopt(self) -> None:
        """Adopt a file that another process grew past this map (MDB_MAP_RESIZED)."""

        def target(used: int) -> int:
            if used <= self.map_size:
                return 0  # adopted by another thread meanwhile
            # Not set_mapsize(0): that takes the size recorded in the file, which is the largest
            # any process ever used (1 TiB for stores made by older versions). Room to grow, too.
            return used + min(used, _MAX_GROWTH)

        self._remap(target)

    def _abort(self, txn: lmdb.Transaction) -> None:
        """Abort the caller's write transaction and leave the gate, readers held off.

        py-lmdb's abort of a write transaction waits until no operation on the environment is
        in flight in any thread, which readers in other threads would put off indefinitely.
        """
        if not self._remap_lock.acquire(blocking=False):
            # Another thread is remapping: it holds the readers off already, and it waits for
            # this transaction to leave the gate, so waiting for its lock here would deadlock.
            try:
                txn.abort()
            finally:
                self.leave()
            return
        try:
            self.resizing = True
            while len(self.active) > 1:  # all but the caller's own transaction
                time.sleep(_DRAIN_POLL)
            try:
                txn.abort()
            finally:
                self.leave()
        finally:
            if not self.broken:
                self.resizing = False
            self._remap_lock.release()

    def _remap(self, target: Callable[[int], int]) -> None:
        """Remap to ``target(bytes the file uses)`` (0: keep) once no transaction is active."""
        with self._remap_lock:
            if self.broken:
                raise StoreError(self.broken)
            self.resizing = True
            try:
                while self.active:  # transactions that entered before the flag went up
                    time.sleep(_DRAIN_POLL)
                # Only now is the map stable enough to read the meta pages in it.
                used = (self.lmdb.info()["last_pgno"] + 1) * self.psize
                size = target(used)
                if not size:
                    return
                size = _round_up(size)
                try:
                    self.lmdb.set_mapsize(size)
                except lmdb.Error as exc:
                    # The old map is gone and no new one is in place (out of address space):
                    # every later use of this environment is refused (resizing stays up).
                    self.broken = (
                        f"cannot grow the map of the packed block store {self.path} from "
                        f"{self.map_size} to {size} bytes ({exc}): restart the process"
                    )
                    raise StoreError(self.broken) from exc
                self.map_size = self.lmdb.info()["map_size"]
            finally:
                if not self.broken:
                    self.resizing = False

    def _chasing(self) -> str:
        return (
            f"expected the packed block store {self.path} to fit its map after {_MAX_REMAPS} "
            f"remaps, found it still growing past {self.map_size} bytes"
        )


_ENVS: dict[str, _Env] = {}
_ENVS_LOCK = threading.Lock()


def _env(path: Path, *, sync: bool) -> _Env:
    """The process's one environment for ``path`` (opened on first use; refused after fork)."""
    key = os.path.realpath(path)
    pid = os.getpid()
    with _ENVS_LOCK:
        found = _ENVS.get(key)
        if found is not None and found.pid == pid:
            return found
        if found is not None:
            # Inherited through fork: LMDB forbids using it here (its reader slots carry the
            # parent's pid) and closing it would free the parent's slots; py-lmdb also refuses
            # to open the same file again in this process. So a forked child is refused.
            raise StoreError(
                f"expected the packed block store {path} to be opened in this process, found it "
                f"inherited through fork from process {found.pid}: open the repository in a new "
                "process (spawn or exec), not in a forked child"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            try:
                on_disk = (path / "data.mdb").stat().st_size
            except FileNotFoundError:
                on_disk = 0
            env = lmdb.open(
                str(path),
                map_size=_round_up(max(_MAP_SIZE, 2 * on_disk)),
                max_readers=_MAX_READERS,
                max_dbs=0,
                sync=sync,
                metasync=sync,
                readahead=False,  # random reads of a big file: readahead only evicts the cache
                meminit=False,
                lock=True,
            )
        except (lmdb.Error, OSError) as exc:
            raise StoreError(f"cannot open packed block store at {path}: {exc}") from exc
        opened = _ENVS[key] = _Env(env, path)
        return opened


def _disk_full(path: Path, size: int) -> str:
    """Say so when a write failed because the disk (not the map) is full.

    LMDB reports ENOSPC as ENOSPC only when the first write fails; a write cut short by a full
    disk comes back as EIO ("short write, filesystem full?"), so the free space is looked at.
    """
    try:
        st = os.statvfs(path)
    except OSError:
        return ""
    free = st.f_bavail * st.f_frsize
    if free >= 2 * size + _MAP_ALIGN:
        return ""
    return f": the disk is full ({free} bytes free, the write needs about {size}): free space and retry"


def _key(cid: CID) -> bytes:
    return cid.to_v1().buffer


def _mismatch(cid: CID, data: bytes) -> str:
    found = compute_digest(cid.hash_code, data)
    if found == cid.digest:
        return ""
    name = HASH_NAMES.get(cid.hash_code, hex(cid.hash_code))
    return f"expected {name} digest {cid.digest.hex()}, found {found.hex()} ({len(data)} bytes)"


# The key of a CIDv1 with a sha2-256 multihash ends with these two bytes and the 32-byte digest:
# verify checks those without parsing the CID (the common case, and the hot loop of verify).
_SHA256_MH: Final = b"\x12\x20"


def _check_value(key: memoryview | bytes, value: memoryview | bytes) -> str | None:
    """Why ``value`` is not the block of CID bytes ``key``, or ``None`` when it is."""
    # A match here would take a sha256 preimage of the key's last 32 bytes, so it is safe to
    # accept; anything else (other hashes, a mismatch) goes through the full check for its reason.
    if (
        36 <= len(key) <= 40
        and key[0] == 1
        and key[-34:-32] == _SHA256_MH
        and (hashlib.sha256(value).digest() == key[-32:])
    ):
        return None
    try:
        cid = CID.from_bytes(bytes(key))
    except (InvalidInputError, ValueError) as exc:
        return f"expected a CID key, found {key.hex()}: {exc}"
    try:
        return _mismatch(cid, bytes(value)) or None
    except InvalidInputError as exc:  # an unsupported hash function cannot be checked
        return str(exc)


def reason_block(key: bytes, reason: str, path: Path) -> CorruptBlock:
    """A :class:`CorruptBlock` for the packed value under ``key``."""
    try:
        cid: CID | None = CID.from_bytes(key)
    except (InvalidInputError, ValueError):
        cid = None
    return CorruptBlock(cid, path, reason)


@dataclass(frozen=True, slots=True)
class MigrateResult:
    """What :meth:`PackedBlockStore.migrate` did.

    Attributes:
        packed: block files copied into the packed store (their files then deleted).
        bytes_packed: the bytes of those blocks.
        large: block files left as files because they are over ``pack_limit``.
        corrupt: block files left in place because their bytes do not match their CID
            (``cats repo verify`` names them).
    """

    packed: int
    bytes_packed: int
    large: int
    corrupt: int


class PackedBlockStore:
    """Blocks under ``root``: packed in LMDB up to ``pack_limit`` bytes, files above.

    Implements :class:`~cats_runtime.cas.BlockStore`, plus iteration, delete, verify and the
    maintenance calls :class:`~cats_runtime.cas.Repo` uses. Blocks already stored as files (a
    layout-1 repository) are read, iterated, verified and deleted in place.

    Args:
        root: the directory (created if missing).
        sync: make every put durable before it returns (the default).
        pack_limit: the largest block packed, in bytes.

    Raises:
        StoreError: ``root`` cannot be opened.
    """

    def __init__(self, root: Path | str, *, sync: bool = True, pack_limit: int = PACK_LIMIT) -> None:
        self.root = Path(root)
        self.sync = sync
        self.pack_limit = pack_limit
        self.files = FSBlockStore(self.root, sync=sync)
        self.packed_path = self.root / _PACKED_DIR
        self._opened: _Env | None = None
        self._env()

    def __repr__(self) -> str:
        return f"PackedBlockStore({str(self.root)!r})"

    def _env(self) -> _Env:
        # Kept per instance and process: resolving the path (realpath) on every get cost more
        # than the read. A forked child has another pid, so it still goes through _env's refusal.
        opened = self._opened
        if opened is not None and opened.pid == os.getpid():
            return opened
        opened = self._opened = _env(self.packed_path, sync=self.sync)
        return opened

    def path_of(self, cid: CID) -> Path:
        """The file a large block is (or would be) stored in; packed blocks have no file."""
        return self.files.path_of(cid)

    # -- reads ----------------------------------------------------------------------------
    def _packed_get(self, cid: CID) -> bytes | None:
        """The packed value stored under ``cid`` (not re-hashed), or None when it is not packed."""
        env = self._env()
        active = env.active
        try:
            # _Env.get with its fast path inlined (the hot path of every read: each call level
            # costs about as much as the gate).
            active.append(None)
            try:
                if not env.resizing:
                    with env.lmdb.begin() as txn:
                        data: bytes | None = txn.get(_key(cid))
                        return data
            except lmdb.MapResizedError:
                pass
            finally:
                active.pop()
            return env.get(_key(cid))  # a remap is under way, or one is needed
        except lmdb.Error as exc:
            raise StoreError(f"cannot read block {cid} from {self.packed_path}: {exc}") from exc

    def get_unverified(self, cid: CID) -> bytes:
        """The stored bytes of ``cid`` as they are, not re-hashed (for serving without checks).

        Raises:
            BlockNotFoundError: no such block.
            StoreError: the store cannot be read.
        """
        if cid.hash_code == IDENTITY:
            return cid.digest
        data = self._packed_get(cid)
        if data is not None:
            return bytes(data)
        try:
            with open(self.files.path_of(cid), "rb", buffering=0) as f:
                return f.read()
        except FileNotFoundError:
            if self._packed_has(cid):  # packed meanwhile by `cats repo migrate`
                return self.get_unverified(cid)
            raise BlockNotFoundError(f"block {cid} not found in {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read block {cid}: {exc}") from exc

    def get(self, cid: CID) -> bytes:
        """Return the block's bytes after re-hashing them against ``cid``.

        Raises:
            BlockNotFoundError: no such block.
            CorruptBlockError: the stored bytes do not hash to ``cid``; an IntegrityError.
            StoreError: the store cannot be read.
        """
        if cid.hash_code == IDENTITY:
            return cid.digest
        data = self._packed_get(cid)
        if data is None:
            try:
                return self.files.get(cid)
            except BlockNotFoundError:
                if not self._packed_has(cid):  # not packed meanwhile by `cats repo migrate`
                    raise
                return self.get(cid)
        reason = _mismatch(cid, data)
        if reason:
            raise CorruptBlockError(f"block {cid} packed in {self.packed_path} is corrupt: {reason}")
        return data

    def has(self, cid: CID) -> bool:
        """True when the block is stored (content is checked on :meth:`get`)."""
        if cid.hash_code == IDENTITY:
            return True
        env = self._env()
        active = env.active
        try:
            active.append(None)  # _Env.contains with its fast path inlined, as in _packed_get
            try:
                fast = not env.resizing
                if fast:
                    with env.lmdb.begin(buffers=True) as txn:
                        if txn.get(_key(cid)) is not None:
                            return True
            except lmdb.MapResizedError:
                fast = False
            finally:
                active.pop()
            if not fast and env.contains(_key(cid)):
                return True
        except lmdb.Error as exc:
            raise StoreError(f"cannot read block {cid} from {self.packed_path}: {exc}") from exc
        return self.files.has(cid) or self._packed_has(cid)  # (packed meanwhile by migrate)

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, CID) and self.has(cid)

    def size(self, cid: CID) -> int:
        """The stored size of a block in bytes.

        Raises:
            BlockNotFoundError: no such block.
        """
        with self._env().read_views() as txn:
            data = txn.get(_key(cid))
            if data is not None:
                return len(data)
        try:
            return self.files.path_of(cid).stat().st_size
        except FileNotFoundError:
            raise BlockNotFoundError(f"block {cid} not found in {self.root}") from None

    def _scan_packed(self, *, values: bool) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value or b"")`` of every packed block, a short read txn per chunk."""
        after: bytes | None = None
        while True:
            chunk: list[tuple[bytes, bytes]] = []
            try:
                with self._env().read() as txn, txn.cursor() as cur:
                    found = cur.set_range(after) if after is not None else cur.first()
                    if found and after is not None and cur.key() == after:
                        found = cur.next()
                    while found and len(chunk) < _SCAN_CHUNK:
                        chunk.append((cur.key(), cur.value() if values else b""))
                        found = cur.next()
            except lmdb.Error as exc:
                raise StoreError(f"cannot list packed blocks in {self.packed_path}: {exc}") from exc
            if not chunk:
                return
            yield from chunk
            after = chunk[-1][0]

    def __iter__(self) -> Iterator[CID]:
        """Yield the CIDv1 of every stored block, streaming (no list of all CIDs is built)."""
        for key, _ in self._scan_packed(values=False):
            yield CID.from_bytes(key)
        for cid in self.files:
            if not self._packed_has(cid):  # a block in both places is yielded once
                yield cid

    def _packed_has(self, cid: CID) -> bool:
        return self._env().contains(_key(cid))

    def verify(self) -> list[CorruptBlock]:
        """Re-hash every stored block; returns the corrupt ones (empty when sound)."""
        return self.check()[1]

    def check(self) -> tuple[int, list[CorruptBlock]]:
        """Like :meth:`verify`, also counting the blocks examined.

        Returns:
            ``(blocks examined, corrupt or misplaced blocks)``.
        """
        corrupt: list[CorruptBlock] = []
        checked = 0
        after: bytes | None = None
        while True:
            # Hash inside a short read transaction, straight from the map (no copy of the value).
            n = 0
            try:
                with self._env().read_views() as txn, txn.cursor() as cur:
                    found = cur.set_range(after) if after is not None else cur.first()
                    if found and after is not None and bytes(cur.key()) == after:
                        found = cur.next()
                    if found:
                        last = None
                        sha256 = hashlib.sha256
                        for key, value in cur.iternext():  # memoryviews into the map, valid here
                            # The common case inline (a CIDv1 sha2-256 key whose digest matches:
                            # a function call per block costs as much as hashing a small one).
                            if not (
                                len(key) == 36
                                and key[2] == 0x12  # sha2-256,
                                and key[3] == 0x20  # 32 bytes
                                and key[0] == 1
                                and sha256(value).digest() == key[4:]
                            ):
                                reason = _check_value(key, value)
                                if reason is not None:
                                    corrupt.append(reason_block(bytes(key), reason, self.packed_path))
                            n += 1
                            last = key
                            if n >= _SCAN_CHUNK:
                                break
                        if last is not None:
                            after = bytes(last)
            except lmdb.Error as exc:
                raise StoreError(f"cannot verify packed blocks in {self.packed_path}: {exc}") from exc
            checked += n
            if n < _SCAN_CHUNK:
                break
        file_checked, file_corrupt = self.files.check()
        return checked + file_checked, corrupt + file_corrupt

    # -- writes ---------------------------------------------------------------------------
    def put(self, block: Block) -> None:
        """Store a block durably; a no-op when it is already present.

        Raises:
            StoreError: the block cannot be written.
        """
        self.put_many((block,))

    def put_many(self, blocks: Iterable[Block]) -> None:
        """Store many blocks: one synced LMDB transaction per batch of small blocks.

        Each batch (up to 4096 blocks or 32 MiB) is committed atomically and durably: after a
        crash it is there entirely or not at all. Blocks over ``pack_limit`` go to the file
        store's batched put. When this returns every block is durable.

        Raises:
            StoreError: a block cannot be written (batches committed before stay: they are
                complete and valid).
        """
        batch: list[Block] = []
        batch_bytes = 0
        large: list[Block] = []
        large_bytes = 0
        # A full batch is committed by one background thread while the caller goes on producing
        # the next (hashing files, receiving a CAR): the sync is disk time, not CPU time. One
        # commit in flight at most, so at most two batches are held.
        committer: ThreadPoolExecutor | None = None
        pending: Future[None] | None = None
        try:
            for block in blocks:
                if block.cid.hash_code == IDENTITY:
                    continue
                size = len(block.data)
                if size > self.pack_limit:
                    large.append(block)
                    large_bytes += size
                    if large_bytes >= _FILE_BATCH_BYTES:
                        self.files.put_many(large)
                        large, large_bytes = [], 0
                    continue
                batch.append(block)
                batch_bytes += size
                if len(batch) >= _BATCH_BLOCKS or batch_bytes >= _BATCH_BYTES:
                    if pending is not None:
                        pending.result()  # its error ends the put here, later batches unwritten
                    if committer is None:
                        committer = ThreadPoolExecutor(1, thread_name_prefix="cats-pack-commit")
                    pending = committer.submit(self._commit, batch)
                    batch, batch_bytes = [], 0
            if pending is not None:
                pending.result()
                pending = None
            if batch:
                self._commit(batch)
            if large:
                self.files.put_many(large)
        finally:
            if committer is not None:
                committer.shutdown(wait=True)  # an interrupted put still ends its commit cleanly

    def _commit(self, batch: list[Block]) -> None:
        size = sum(len(block.data) for block in batch)

        def work(txn: lmdb.Transaction) -> None:
            # Measured: each put releases and re-takes the GIL, so while another thread computes
            # (an importer hashing) every put waits for it; Cursor.putmulti does the same per
            # item and was no faster. This is what bounds a durable small-file add (docs/store.md).
            for block in batch:
                key = _key(block.cid)
                if not txn.put(key, block.data, overwrite=False):
                    # Present already. A value of the wrong size is certainly corrupt:
                    # rewrite it (same size with wrong bytes is caught on read and by verify).
                    found = txn.get(key)
                    if found is None or len(found) != len(block.data):
                        txn.put(key, block.data)

        try:
            self._env().write(work, size=size)
        except lmdb.Error as exc:
            full = _disk_full(self.packed_path, size)
            raise StoreError(f"cannot write {len(batch)} blocks to {self.packed_path}{full} ({exc})") from exc

    def delete(self, cid: CID) -> None:
        """Remove a block (from wherever it is stored).

        Raises:
            BlockNotFoundError: the block is not stored.
            StoreError: the block cannot be removed.
        """
        key = _key(cid)
        try:
            packed: bool = self._env().write(lambda txn: txn.delete(key), size=0)
        except lmdb.Error as exc:
            full = _disk_full(self.packed_path, 0)
            raise StoreError(f"cannot delete block {cid} from {self.packed_path}{full} ({exc})") from exc
        try:
            self.files.delete(cid)
        except BlockNotFoundError:
            if not packed:
                raise BlockNotFoundError(f"block {cid} not found in {self.root}") from None

    def delete_many(self, cids: Iterable[CID]) -> int:
        """Remove packed blocks in one synced transaction (file blocks one by one).

        Returns:
            How many of ``cids`` were removed (absent ones are skipped).
        """
        # A list, not the iterable: a transaction that fills the map (deletes write pages too)
        # runs again after the map grows, and must see the same CIDs.
        wanted = list(cids)

        def work(txn: lmdb.Transaction) -> tuple[int, list[CID]]:
            deleted = 0
            absent: list[CID] = []
            for cid in wanted:
                if txn.delete(_key(cid)):
                    deleted += 1
                else:
                    absent.append(cid)
            return deleted, absent

        try:
            removed, leftover = self._env().write(work, size=0)
        except lmdb.Error as exc:
            full = _disk_full(self.packed_path, 0)
            raise StoreError(f"cannot delete blocks from {self.packed_path}{full} ({exc})") from exc
        for cid in leftover:
            try:
                self.files.delete(cid)
                removed += 1
            except BlockNotFoundError:
                continue
        return removed

    def remove_stale_temp_files(self, older_than: float = 3600.0) -> int:
        """Clean up after crashed writers; returns how many temporary files were removed.

        Removes the file store's stale temporary files (see
        :meth:`FSBlockStore.remove_stale_temp_files`) and clears the LMDB reader slots of dead
        processes, which would otherwise keep old pages from being reused.
        """
        try:
            self._env().lmdb.reader_check()  # the lock file's reader table: not in the map
        except lmdb.Error as exc:
            raise StoreError(f"cannot check readers of {self.packed_path}: {exc}") from exc
        return self.files.remove_stale_temp_files(older_than)

    def migrate(self, progress: Callable[[int], None] | None = None) -> MigrateResult:
        """Pack the small blocks still stored as files (a layout-1 repository's blocks).

        Batch by batch: the files are read and verified, copied into one synced LMDB
        transaction, and only after it commits are the files deleted. A crash at any point
        leaves every block in at least one place; running it again finishes the job (a block
        already packed just has its file deleted). Corrupt files are left where they are.

        Args:
            progress: called with the number of files handled after each batch.

        Raises:
            StoreError: the store cannot be read or written.
        """
        packed = packed_bytes = large = corrupt = 0
        batch: list[tuple[CID, bytes, Path]] = []
        batch_bytes = 0

        def flush() -> None:
            nonlocal packed, packed_bytes
            self._commit([Block._trusted(cid, data) for cid, data, _ in batch])  # each verified above
            for _, data, path in batch:  # only now, with the packed copies durable
                path.unlink(missing_ok=True)
                packed += 1
                packed_bytes += len(data)
            if progress is not None:
                progress(len(batch))

        for path, cid, reason in self.files._scan():
            if cid is None or reason:
                corrupt += 1
                continue
            try:
                size = path.stat().st_size
                if size > self.pack_limit:
                    large += 1
                    continue
                with open(path, "rb", buffering=0) as f:
                    data = f.read()
            except FileNotFoundError:
                continue  # deleted meanwhile
            except OSError as exc:
                raise StoreError(f"cannot read block {cid} at {path}: {exc}") from exc
            try:
                bad = _mismatch(cid, data)
            except InvalidInputError as exc:
                bad = str(exc)
            if bad:
                corrupt += 1
                continue
            batch.append((cid, data, path))
            batch_bytes += len(data)
            if len(batch) >= _BATCH_BLOCKS or batch_bytes >= _BATCH_BYTES:
                flush()
                batch, batch_bytes = [], 0
        if batch:
            flush()
        return MigrateResult(packed, packed_bytes, large, corrupt)
