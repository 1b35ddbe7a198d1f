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

Every read is re-hashed against its CID (:class:`~cats_runtime.errors.CorruptBlockError`).
:meth:`PackedBlockStore.put_many` commits one LMDB transaction per batch, synced at commit:
after a crash each batch is there entirely or not at all.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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
# Address space reserved for the map (sparse: the file grows with the data, not to this size).
# The map reserves address space per open store, kept for the process's life: 1 TiB each ran a
# process opening many homes (the test suite) out of its 128 TiB. 64 GiB holds about 25M small
# blocks; CATS_LMDB_MAP_GIB raises it (growing the map on MapFullError is the follow-up).
_MAP_SIZE: Final = int(os.environ.get("CATS_LMDB_MAP_GIB", "64")) << 30
_MAX_READERS: Final = 1024
_PACKED_DIR: Final = "packed"

_ENVS: dict[str, tuple[int, lmdb.Environment]] = {}
_ENVS_LOCK = threading.Lock()


def _env(path: Path, *, sync: bool) -> lmdb.Environment:
    """The process's one environment for ``path`` (opened on first use; refused after fork)."""
    key = os.path.realpath(path)
    pid = os.getpid()
    with _ENVS_LOCK:
        found = _ENVS.get(key)
        if found is not None and found[0] == pid:
            return found[1]
        if found is not None:
            # Inherited through fork: LMDB forbids using it here (its reader slots carry the
            # parent's pid) and closing it would free the parent's slots; py-lmdb also refuses
            # to open the same file again in this process. So a forked child is refused.
            raise StoreError(
                f"expected the packed block store {path} to be opened in this process, found it "
                f"inherited through fork from process {found[0]}: open the repository in a new "
                "process (spawn or exec), not in a forked child"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            env = lmdb.open(
                str(path),
                map_size=_MAP_SIZE,
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
        _ENVS[key] = (pid, env)
        return env


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
        self._opened: tuple[int, lmdb.Environment] | None = None
        self._env()

    def __repr__(self) -> str:
        return f"PackedBlockStore({str(self.root)!r})"

    def _env(self) -> lmdb.Environment:
        # Kept per instance and process: resolving the path (realpath) on every get cost more
        # than the read. A forked child has another pid, so it still goes through _env's refusal.
        opened = self._opened
        if opened is not None and opened[0] == os.getpid():
            return opened[1]
        env = _env(self.packed_path, sync=self.sync)
        self._opened = (os.getpid(), env)
        return env

    def path_of(self, cid: CID) -> Path:
        """The file a large block is (or would be) stored in; packed blocks have no file."""
        return self.files.path_of(cid)

    # -- reads ----------------------------------------------------------------------------
    def _packed_get(self, cid: CID) -> bytes | None:
        """The packed value stored under ``cid`` (not re-hashed), or None when it is not packed."""
        try:
            with self._env().begin() as txn:
                data: bytes | None = txn.get(_key(cid))
                return data
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
        try:
            with self._env().begin(buffers=True) as txn:
                if txn.get(_key(cid)) is not None:
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
        with self._env().begin(buffers=True) as txn:
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
                with self._env().begin() as txn, txn.cursor() as cur:
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
        with self._env().begin(buffers=True) as txn:
            return txn.get(_key(cid)) is not None

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
                with self._env().begin(buffers=True) as txn, txn.cursor() as cur:
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
        try:
            with self._env().begin(write=True, buffers=True) as txn:
                for block in batch:
                    key = _key(block.cid)
                    if not txn.put(key, block.data, overwrite=False):
                        # Present already. A value of the wrong size is certainly corrupt:
                        # rewrite it (same size with wrong bytes is caught on read and by verify).
                        found = txn.get(key)
                        if found is None or len(found) != len(block.data):
                            txn.put(key, block.data)
        except lmdb.Error as exc:
            raise StoreError(f"cannot write {len(batch)} blocks to {self.packed_path}: {exc}") from exc

    def delete(self, cid: CID) -> None:
        """Remove a block (from wherever it is stored).

        Raises:
            BlockNotFoundError: the block is not stored.
            StoreError: the block cannot be removed.
        """
        try:
            with self._env().begin(write=True) as txn:
                packed = txn.delete(_key(cid))
        except lmdb.Error as exc:
            raise StoreError(f"cannot delete block {cid} from {self.packed_path}: {exc}") from exc
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
        removed = 0
        leftover: list[CID] = []
        try:
            with self._env().begin(write=True) as txn:
                for cid in cids:
                    if txn.delete(_key(cid)):
                        removed += 1
                    else:
                        leftover.append(cid)
        except lmdb.Error as exc:
            raise StoreError(f"cannot delete blocks from {self.packed_path}: {exc}") from exc
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
            self._env().reader_check()
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
