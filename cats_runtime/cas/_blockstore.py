"""A durable, verifying block store on the local filesystem (layout modelled on Kubo's flatfs).

Layout under ``root``::

    SHARDING                      the layout identifier (checked on open)
    <SH>/<KEY>.data               one file per block
    <SH>/.<KEY>.<pid>.<rand>.tmp  a put in progress (never read as a block)

``KEY`` is the unpadded upper-case RFC 4648 base32 of the block's **CIDv1 binary form**, so
the codec survives (iteration gives back full CIDs) and a CIDv0 and its CIDv1 spelling share
one file. Kubo keys by multihash alone and so loses the codec; CATs needs the codec to walk
DAGs found by iteration (gc, verify). ``SH`` is the next-to-last two characters of ``KEY``,
as in flatfs: the leading characters of a CID are the same for every block, the trailing
character carries only a few bits of the digest.

Writes go to a temporary file in the destination directory, are fsynced, renamed into place
(atomic on POSIX) and the directory is fsynced, so a crash leaves either no block or a
complete one. Two processes putting the same block race harmlessly: both renames install
identical bytes. Every read is re-hashed against the CID it was asked for.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import BlockNotFoundError, IntegrityError, InvalidCIDError, InvalidInputError, StoreError
from ._cid import HASH_NAMES, IDENTITY, CID, Block, compute_digest

__all__ = ["CorruptBlock", "FSBlockStore"]

_SHARDING: Final = "cats/flatfs/v1/key=base32-cidv1/shard=next-to-last/2\n"
_SUFFIX: Final = ".data"
_TMP_SUFFIX: Final = ".tmp"
# Writer threads for put_many: os.write and fdatasync release the GIL, so writes overlap the
# caller's hashing (the importer hashes while the previous blocks are being written).
_WRITERS: Final = 3
# Blocks handed to the writers but not yet written; bounds the memory put_many holds on to.
_IN_FLIGHT: Final = 32


@dataclass(frozen=True, slots=True)
class CorruptBlock:
    """A block file that failed :meth:`FSBlockStore.verify`.

    Attributes:
        cid: the CID the file is stored under, or ``None`` when its name is not a CID key.
        path: the file.
        reason: what was expected and what was found.
    """

    cid: CID | None
    path: Path
    reason: str


def _key(cid: CID) -> str:
    return base64.b32encode(cid.to_v1().buffer).decode("ascii").rstrip("=")


def _cid_of_key(key: str) -> CID:
    padded = key + "=" * (-len(key) % 8)
    try:
        raw = base64.b32decode(padded, casefold=False)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCIDError(f"expected a base32 CID key, found {key!r}") from exc
    cid = CID.from_bytes(raw)
    if cid.version != 1 or _key(cid) != key:
        raise InvalidCIDError(f"expected the canonical CIDv1 key, found {key!r}")
    return cid


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FSBlockStore:
    """Blocks as files under ``root``; implements :class:`~cats_runtime.cas.BlockStore`.

    Args:
        root: the directory (created if missing).
        sync: fsync data and directories before a put returns (the default). ``False`` trades
            crash safety for speed (like Kubo's ``flatfs`` ``sync: false``): a crash may then
            leave truncated files, which reads still detect by hash.

    Raises:
        StoreError: ``root`` holds a different layout or cannot be created.
    """

    def __init__(self, root: Path | str, *, sync: bool = True) -> None:
        self.root = Path(root)
        self.sync = sync
        self._known_shards: set[str] = set()
        self._shard_lock = threading.Lock()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            marker = self.root / "SHARDING"
            if marker.exists():
                found = marker.read_text(encoding="utf-8")
                if found != _SHARDING:
                    raise StoreError(
                        f"expected block store layout {_SHARDING.strip()!r} in {marker}, found {found.strip()!r}"
                    )
            else:
                self._atomic_small_write(marker, _SHARDING.encode())
        except StoreError:
            raise
        except OSError as exc:
            raise StoreError(f"cannot open block store at {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"FSBlockStore({str(self.root)!r})"

    # -- paths ----------------------------------------------------------------------------
    def path_of(self, cid: CID) -> Path:
        """The file a block is (or would be) stored in."""
        key = _key(cid)
        return self.root / key[-3:-1] / (key + _SUFFIX)

    def _shard_dir(self, key: str) -> tuple[Path, bool]:
        """Return the shard directory of ``key`` and whether this call created it."""
        shard = key[-3:-1]
        path = self.root / shard
        if shard in self._known_shards:
            return path, False
        with self._shard_lock:
            created = False
            try:
                path.mkdir()
                created = True
            except FileExistsError:
                pass
            self._known_shards.add(shard)
        return path, created

    def _atomic_small_write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    # -- reads ----------------------------------------------------------------------------
    def get(self, cid: CID) -> bytes:
        """Return the block's bytes after re-hashing them against ``cid``.

        Raises:
            BlockNotFoundError: no such block.
            IntegrityError: the file's bytes do not hash to ``cid`` (names the CID and file).
            StoreError: the file cannot be read.
        """
        if cid.hash_code == IDENTITY:
            return cid.digest  # identity CIDs carry their bytes inline and are never stored
        path = self.path_of(cid)
        try:
            with open(path, "rb", buffering=0) as f:
                data = f.read()
        except FileNotFoundError:
            raise BlockNotFoundError(f"block {cid} not found in {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read block {cid} at {path}: {exc}") from exc
        reason = self._mismatch(cid, data)
        if reason:
            raise IntegrityError(f"block {cid} stored at {path} is corrupt: {reason}")
        return data

    @staticmethod
    def _mismatch(cid: CID, data: bytes) -> str:
        found = compute_digest(cid.hash_code, data)
        if found == cid.digest:
            return ""
        name = HASH_NAMES.get(cid.hash_code, hex(cid.hash_code))
        return f"expected {name} digest {cid.digest.hex()}, found {found.hex()} ({len(data)} bytes)"

    def has(self, cid: CID) -> bool:
        """True when the block's file exists (content is checked on :meth:`get`)."""
        if cid.hash_code == IDENTITY:
            return True
        return self.path_of(cid).exists()

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, CID) and self.has(cid)

    def __iter__(self) -> Iterator[CID]:
        """Yield the CIDv1 of every stored block (files whose names are not CID keys are skipped)."""
        for _, cid, _ in self._scan():
            if cid is not None:
                yield cid

    def _scan(self) -> Iterator[tuple[Path, CID | None, str]]:
        """Yield ``(path, cid or None, reason)`` for every ``.data`` file."""
        try:
            shards = sorted(e.name for e in os.scandir(self.root) if e.is_dir() and len(e.name) == 2)
        except OSError as exc:
            raise StoreError(f"cannot list block store {self.root}: {exc}") from exc
        for shard in shards:
            try:
                names = sorted(os.listdir(self.root / shard))
            except FileNotFoundError:
                continue
            for name in names:
                if not name.endswith(_SUFFIX) or name.startswith("."):
                    continue
                key = name[: -len(_SUFFIX)]
                path = self.root / shard / name
                try:
                    cid = _cid_of_key(key)
                except (InvalidCIDError, ValueError) as exc:
                    yield path, None, f"expected a file named <base32 CIDv1>{_SUFFIX}, found {name!r}: {exc}"
                    continue
                if key[-3:-1] != shard:
                    yield path, None, f"expected block {cid} in shard {key[-3:-1]!r}, found it in {shard!r}"
                    continue
                yield path, cid, ""

    def verify(self) -> list[CorruptBlock]:
        """Re-hash every stored block.

        Returns:
            The corrupt or misplaced files (empty when the store is sound).
        """
        corrupt: list[CorruptBlock] = []
        for path, cid, reason in self._scan():
            if cid is None:
                corrupt.append(CorruptBlock(None, path, reason))
                continue
            try:
                with open(path, "rb", buffering=0) as f:
                    data = f.read()
            except FileNotFoundError:
                continue  # deleted since the listing
            except OSError as exc:
                corrupt.append(CorruptBlock(cid, path, f"cannot read: {exc}"))
                continue
            try:
                mismatch = self._mismatch(cid, data)
            except InvalidInputError as exc:  # an unsupported hash function cannot be checked
                mismatch = str(exc)
            if mismatch:
                corrupt.append(CorruptBlock(cid, path, mismatch))
        return corrupt

    # -- writes ---------------------------------------------------------------------------
    def _needs_write(self, block: Block) -> bool:
        if block.cid.hash_code == IDENTITY:
            return False
        try:
            st = os.stat(self.path_of(block.cid))
        except FileNotFoundError:
            return True
        except OSError as exc:
            raise StoreError(f"cannot stat block {block.cid}: {exc}") from exc
        # A file of the wrong size is certainly corrupt: rewrite it rather than keep it. (Same
        # size with wrong bytes is caught on read and reported by verify(); re-hashing here
        # would halve put throughput.)
        return st.st_size != len(block.data)

    def _write_one(self, block: Block) -> tuple[Path, bool]:
        """Write ``block`` atomically (fsyncing its data when ``sync``); return its directory
        and whether that directory was created (so its parent also needs an fsync)."""
        key = _key(block.cid)
        shard, created = self._shard_dir(key)
        final = shard / (key + _SUFFIX)
        tmp = shard / f".{key}.{os.getpid()}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
            try:
                _write_all(fd, block.data)
                if self.sync:
                    os.fdatasync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise StoreError(f"cannot write block {block.cid} to {final}: {exc}") from exc
        return shard, created

    def _sync_dirs(self, dirs: set[Path], root_too: bool) -> None:
        if not self.sync:
            return
        try:
            for d in sorted(dirs):
                _fsync_dir(d)
            if root_too:
                _fsync_dir(self.root)
        except OSError as exc:
            raise StoreError(f"cannot fsync block store directories under {self.root}: {exc}") from exc

    def put(self, block: Block) -> None:
        """Store a block durably; a no-op when it is already present.

        Raises:
            StoreError: the block cannot be written (disk full, permissions).
        """
        if not self._needs_write(block):
            return
        shard, created = self._write_one(block)
        self._sync_dirs({shard}, created)

    def put_many(self, blocks: Iterable[Block]) -> None:
        """Store many blocks, batching the durability work.

        Each block's data is written to its temporary file and fdatasync'ed by a small pool of
        writer threads while the caller keeps producing blocks; every touched directory is
        fsynced once at the end. When this returns, every block is durable.

        Raises:
            StoreError: a block cannot be written (blocks already renamed into place stay:
                they are complete and valid).
        """
        dirs: set[Path] = set()
        root_too = False
        slots = threading.BoundedSemaphore(_IN_FLIGHT)
        pending: list[Future[tuple[Path, bool]]] = []
        failure: BaseException | None = None

        def release(_: Future[tuple[Path, bool]]) -> None:
            slots.release()

        with ThreadPoolExecutor(_WRITERS, thread_name_prefix="cats-put") as pool:
            try:
                for block in blocks:
                    if not self._needs_write(block):
                        continue
                    slots.acquire()
                    future = pool.submit(self._write_one, block)
                    future.add_done_callback(release)
                    pending.append(future)
                    if len(pending) >= 4 * _IN_FLIGHT:
                        pending = self._collect(pending, dirs)
            except BaseException as exc:
                failure = exc
            # Always wait for submitted writes so no thread outlives this call.
            for future in pending:
                try:
                    shard, created = future.result()
                    dirs.add(shard)
                    root_too |= created
                except BaseException as exc:
                    failure = failure or exc
        if failure is not None:
            raise failure
        self._sync_dirs(dirs, root_too)

    @staticmethod
    def _collect(pending: list[Future[tuple[Path, bool]]], dirs: set[Path]) -> list[Future[tuple[Path, bool]]]:
        """Harvest finished writes (raising the first failure), keep the rest."""
        still: list[Future[tuple[Path, bool]]] = []
        for future in pending:
            if future.done():
                shard, created = future.result()
                dirs.add(shard)
                if created:
                    dirs.add(shard.parent)
            else:
                still.append(future)
        return still

    def delete(self, cid: CID) -> None:
        """Remove a block.

        Raises:
            BlockNotFoundError: the block is not stored.
            StoreError: the file cannot be removed.
        """
        path = self.path_of(cid)
        try:
            path.unlink()
        except FileNotFoundError:
            raise BlockNotFoundError(f"block {cid} not found in {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot delete block {cid} at {path}: {exc}") from exc

    def remove_stale_temp_files(self, older_than: float = 3600.0) -> int:
        """Delete temporary files left by crashed puts; returns how many were removed.

        Args:
            older_than: only files last modified this many seconds ago or earlier, so puts in
                progress in other processes are left alone.
        """
        cutoff = time.time() - older_than
        removed = 0
        for entry in os.scandir(self.root):
            if not entry.is_dir() or len(entry.name) != 2:
                continue
            for sub in os.scandir(entry.path):
                if sub.name.startswith(".") and sub.name.endswith(_TMP_SUFFIX):
                    try:
                        if sub.stat().st_mtime <= cutoff:
                            os.unlink(sub.path)
                            removed += 1
                    except FileNotFoundError:
                        continue
        return removed
