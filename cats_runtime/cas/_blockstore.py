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
import contextlib
import ctypes
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from ..errors import BlockNotFoundError, CorruptBlockError, InvalidCIDError, InvalidInputError, StoreError
from ._cid import CID, HASH_NAMES, IDENTITY, Block, compute_digest

__all__ = ["CorruptBlock", "FSBlockStore"]

_SHARDING: Final = "cats/flatfs/v1/key=base32-cidv1/shard=next-to-last/2\n"
_SUFFIX: Final = ".data"
_TMP_SUFFIX: Final = ".tmp"
# Writer threads for put_many: os.write and fdatasync release the GIL, so writes overlap the
# caller's hashing (the importer hashes while the previous blocks are being written). Measured
# on 2 cores: more writers help to hide disk latency on ext4 but cost CPU on tmpfs (1: 0.61x,
# 2: 0.42x, 3: 0.37x of sha256 on tmpfs; on ext4 3 writers beat 1 by about 2x); 2 is the middle.
_WRITERS: Final = 2
# put_many syncs and renames in batches: bounds open files and the memory held for writers.
_BATCH_FILES: Final = 256
_BATCH_BYTES: Final = 64 * 1024 * 1024


class _Staged:
    """A block written to its temporary file, not yet synced or renamed."""

    __slots__ = ("cid", "created", "fd", "final", "tmp")

    def __init__(self, cid: CID, fd: int, tmp: Path, final: Path, created: bool) -> None:
        self.cid = cid
        self.fd = fd
        self.tmp = tmp
        self.final = final
        self.created = created  # the shard directory is new: its parent needs an fsync too

    def dirs(self) -> set[Path]:
        shard = self.final.parent
        return {shard, shard.parent} if self.created else {shard}

    def abort(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)


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


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):  # not Linux: fall back to os.sync()
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return cast("Callable[[int], int]", fn)


_SYNCFS = _load_syncfs()


def _syncfs(path: Path) -> None:
    """Make every written page and inode of the filesystem holding ``path`` durable.

    One syncfs(2) costs about one journal commit, where fdatasync on each of N files costs N
    commits: for a batch of 256 KiB blocks that is the difference between ~0.1x and ~1x of
    sha256 throughput on ext4 here (see benchmarks/bench_blockstore_put_many.py).
    """
    if _SYNCFS is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed: {os.strerror(err)}", str(path))
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
                        f"expected block store layout {_SHARDING.strip()!r} in {marker}, "
                        f"found {found.strip()!r}"
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
            CorruptBlockError: the file's bytes do not hash to ``cid`` (names the CID and file);
                an IntegrityError.
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
            raise CorruptBlockError(f"block {cid} stored at {path} is corrupt: {reason}")
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
                with os.scandir(self.root / shard) as it:
                    entries = sorted((e.name, e.is_file(follow_symlinks=False)) for e in it)
            except FileNotFoundError:
                continue
            for name, is_file in entries:
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
                if not is_file:
                    yield path, None, f"expected block {cid} to be a regular file, found something else"
                    continue
                yield path, cid, ""

    def verify(self) -> list[CorruptBlock]:
        """Re-hash every stored block.

        Returns:
            The corrupt or misplaced files (empty when the store is sound).
        """
        return self.check()[1]

    def check(self) -> tuple[int, list[CorruptBlock]]:
        """Like :meth:`verify`, also counting the files examined.

        Returns:
            ``(files examined, corrupt or misplaced files)``.
        """
        corrupt: list[CorruptBlock] = []
        checked = 0
        for path, cid, reason in self._scan():
            checked += 1
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
        return checked, corrupt

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

    def _write_temp(self, block: Block) -> _Staged:
        """Write ``block`` to a new temporary file next to its final place; fd left open."""
        key = _key(block.cid)
        shard, created = self._shard_dir(key)
        final = shard / (key + _SUFFIX)
        tmp = shard / f".{key}.{os.getpid()}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        except OSError as exc:
            raise StoreError(f"cannot write block {block.cid} to {final}: {exc}") from exc
        staged = _Staged(block.cid, fd, tmp, final, created)
        try:
            _write_all(fd, block.data)
        except OSError as exc:
            staged.abort()
            raise StoreError(f"cannot write block {block.cid} to {final}: {exc}") from exc
        return staged

    def _commit(self, staged: _Staged, *, synced: bool = False) -> None:
        """Make a written temporary file durable (when ``sync``) and rename it into place.

        ``synced`` says the caller already made the data durable (one syncfs for a batch).
        """
        try:
            if self.sync and not synced:
                os.fdatasync(staged.fd)
            os.close(staged.fd)
            staged.fd = -1
            os.replace(staged.tmp, staged.final)
        except OSError as exc:
            staged.abort()
            raise StoreError(f"cannot write block {staged.cid} to {staged.final}: {exc}") from exc

    def _sync_dirs(self, dirs: set[Path]) -> None:
        if not self.sync:
            return
        try:
            for d in sorted(dirs):
                _fsync_dir(d)
        except OSError as exc:
            raise StoreError(f"cannot fsync block store directories under {self.root}: {exc}") from exc

    def put(self, block: Block) -> None:
        """Store a block durably; a no-op when it is already present.

        Raises:
            StoreError: the block cannot be written (disk full, permissions).
        """
        if not self._needs_write(block):
            return
        staged = self._write_temp(block)
        self._commit(staged)
        self._sync_dirs(staged.dirs())

    def put_many(self, blocks: Iterable[Block]) -> None:
        """Store many blocks, batching the durability work.

        Writer threads write each block to its temporary file while the caller keeps producing
        blocks (os.write releases the GIL, so this overlaps the importer's hashing). Every
        ``_BATCH_FILES`` files or ``_BATCH_BYTES`` bytes, a sync thread makes the batch durable
        with one syncfs(2) and renames it into place while the next batch is being written: one
        syncfs costs about one journal commit on ext4, where an fdatasync per file costs one
        commit per file. A last syncfs makes the renames durable. When this returns, every
        block is durable.

        Raises:
            StoreError: a block cannot be written (blocks already renamed into place stay:
                they are complete and valid; temporary files are removed).
        """
        dirs: set[Path] = set()
        batch: list[Future[_Staged]] = []
        batch_bytes = 0
        failure: BaseException | None = None
        # At most one batch is being synced (by ``syncer``) while the next one is written.
        flushing: Future[set[Path]] | None = None
        with (
            ThreadPoolExecutor(_WRITERS, thread_name_prefix="cats-put") as pool,
            ThreadPoolExecutor(1, thread_name_prefix="cats-sync") as syncer,
        ):
            try:
                for block in blocks:
                    if not self._needs_write(block):
                        continue
                    batch.append(pool.submit(self._write_temp, block))
                    batch_bytes += len(block.data)
                    if len(batch) >= _BATCH_FILES or batch_bytes >= _BATCH_BYTES:
                        if flushing is not None:
                            dirs |= flushing.result()
                        flushing = syncer.submit(self._flush, pool, batch)
                        batch, batch_bytes = [], 0
            except BaseException as exc:
                failure = exc
            if flushing is not None:
                try:
                    dirs |= flushing.result()
                except BaseException as exc:
                    failure = failure or exc
            if failure is None:
                try:
                    dirs |= self._flush(pool, batch)
                except BaseException as exc:
                    failure = exc
            else:
                self._abort(batch)
        if failure is not None:
            raise failure
        if self.sync and dirs:
            # One more syncfs makes every rename durable: cheaper than an fsync per shard dir.
            try:
                _syncfs(self.root)
            except OSError as exc:
                raise StoreError(f"cannot sync block store {self.root}: {exc}") from exc

    def _flush(self, pool: ThreadPoolExecutor, batch: list[Future[_Staged]]) -> set[Path]:
        """Wait for a batch of writes, then sync and rename them all (or abort them all).

        Returns:
            The directories the renames touched (to fsync once at the end).
        """
        dirs: set[Path] = set()
        staged: list[_Staged] = []
        failure: BaseException | None = None
        for future in batch:
            try:
                staged.append(future.result())
            except BaseException as exc:
                failure = failure or exc
        if failure is not None:
            for item in staged:
                item.abort()
            raise failure
        # Data first, then names: after this syncfs every temporary file is durable, so the
        # renames below can never expose a truncated block after a crash.
        if self.sync and staged:
            try:
                _syncfs(self.root)
            except OSError as exc:
                for item in staged:
                    item.abort()
                raise StoreError(f"cannot sync block store {self.root}: {exc}") from exc
        commits = [pool.submit(self._commit, item, synced=True) for item in staged]
        for commit in commits:
            try:
                commit.result()
            except BaseException as exc:
                failure = failure or exc
        for item in staged:
            dirs.update(item.dirs())
        if failure is not None:
            raise failure
        return dirs

    @staticmethod
    def _abort(batch: list[Future[_Staged]]) -> None:
        for future in batch:
            try:
                future.result().abort()
            except BaseException:  # noqa: S112 - the write itself failed: nothing to clean
                continue

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

        A temporary file is stale when the process that created it (its name carries the pid) no
        longer runs on this host, or when it is older than ``older_than`` seconds. The pid rule is
        what makes a ``kill -9`` of ``cats add`` clean up at the next open without waiting; the age
        rule covers a pid reused since (the dead writer then looks alive) and stores shared with
        other hosts, whose pids mean nothing here. A live writer's file is never younger than its
        writer, so neither rule can remove a put in progress: its pid is alive and it is fresh.

        Args:
            older_than: files last modified this many seconds ago or earlier are removed whatever
                their pid says.
        """
        cutoff = time.time() - older_than
        removed = 0
        try:
            top = list(os.scandir(self.root))
        except OSError as exc:
            raise StoreError(f"cannot list block store {self.root}: {exc}") from exc
        candidates = [e for e in top if _is_temp_name(e.name)]
        for entry in top:
            if entry.is_dir(follow_symlinks=False) and len(entry.name) == 2:
                with contextlib.suppress(FileNotFoundError), os.scandir(entry.path) as it:
                    candidates.extend(sub for sub in it if _is_temp_name(sub.name))
        for sub in candidates:
            try:
                if _writer_gone(sub.name) or sub.stat(follow_symlinks=False).st_mtime <= cutoff:
                    os.unlink(sub.path)
                    removed += 1
            except FileNotFoundError:
                continue  # its writer renamed it into place (or another cleaner got it) meanwhile
        return removed


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(_TMP_SUFFIX)


def _writer_gone(name: str) -> bool:
    """True when the pid in a ``.<name>.<pid>.<rand>.tmp`` file name is not a live process here."""
    parts = name[: -len(_TMP_SUFFIX)].split(".")
    if len(parts) < 4 or not parts[-2].isdigit():
        return False  # not our naming: only the age rule applies
    pid = int(parts[-2])
    if pid == os.getpid():
        return False  # this process may be writing it right now (another thread)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, under another uid
    return False
