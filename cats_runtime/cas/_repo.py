"""A local CATs repository (blocks + pins + a lock) and garbage collection.

Layout of ``home``::

    version        the layout version number (refused when newer or unknown)
    repo.lock      flock(2) target: writers share it, gc takes it exclusively
    blocks/        PackedBlockStore (small blocks in blocks/packed/, LMDB; large ones as files)
    pins/          PinStore (pins.sqlite)

Why a lock: an add writes blocks first and pins the root last. Without coordination a gc
running in between would see unpinned blocks and delete them under the add's feet. Writers
hold :meth:`Repo.write_lock` (shared: adds run in parallel) from the first put to the pin;
:meth:`Repo.gc` takes the same lock exclusively, so it runs only between adds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import BlockNotFoundError, StoreError
from ._blockstore import CorruptBlock
from ._cid import CID, IDENTITY, RAW
from ._packstore import MigrateResult, PackedBlockStore
from ._pins import PinStore
from ._walk import links_of

__all__ = ["LAYOUT_VERSION", "GCResult", "MigrateResult", "Repo", "VerifyReport", "gc"]

LAYOUT_VERSION: Final = 2
"""The repository layout this CATs writes and reads.

1: every block a file (FSBlockStore). 2: small blocks packed in LMDB (PackedBlockStore), large
ones still files. A layout-1 repository is upgraded in place when opened: its files stay where
they are and are read from there, so nothing moves and nothing can be lost; ``cats repo migrate``
packs them.
"""

# Layouts this CATs opens (and upgrades to LAYOUT_VERSION by rewriting the version file).
_READABLE_VERSIONS: Final = frozenset({1, LAYOUT_VERSION})
# gc deletes this many unreachable blocks per transaction.
_GC_BATCH: Final = 4096

# What a CATs home holds: the repository's own entries plus those the layers above keep beside
# them (catalog, keys, node state, redeploy work dirs, Pulumi state, the local Ray). Anything else in a
# directory without a version file means it is not a CATs home, so it is refused.
_OWN_NAMES: Final = frozenset(
    {
        "version",
        "repo.lock",
        "blocks",
        "pins",
        "catalog.sqlite",
        "catalog.sqlite-wal",
        "catalog.sqlite-shm",
        "keys",
        "node",
        "redeploy",
        "pulumi-state",
        "ray",  # the home's warm local Ray (state, token, Ray's session files)
    }
)


@dataclass(frozen=True, slots=True)
class GCResult:
    """What a garbage collection did.

    Attributes:
        removed: how many blocks were deleted.
        bytes_freed: the bytes of block data deleted.
        kept: how many blocks remain.
        removed_cids: the CIDs of the deleted blocks when asked for (``list_removed``), else
            empty: a list of every deleted CID would grow with the repository.
    """

    removed: int
    bytes_freed: int
    kept: int
    removed_cids: tuple[CID, ...]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of re-hashing every block of a repository.

    Attributes:
        checked: how many block files were examined.
        corrupt: the corrupt or misplaced ones (empty when the store is sound).
    """

    checked: int
    corrupt: tuple[CorruptBlock, ...]


def gc(store: PackedBlockStore, pins: PinStore, *, list_removed: bool = False) -> GCResult:
    """Delete every block that no pin reaches, in memory that does not grow with the repository.

    Mark: the walk from the pinned roots records each reached block (and its to-do list) in a
    temporary SQLite file under the store, not in Python sets. Sweep: iteration streams the
    store and unmarked blocks are deleted 4,096 per transaction.

    The caller must make sure no add is in progress (:meth:`Repo.gc` holds the repository's
    exclusive lock for that). Nothing is deleted unless every pinned DAG could be walked.

    Args:
        store: the blocks.
        pins: the roots to keep.
        list_removed: also return every deleted CID (memory grows with their number).

    Raises:
        BlockNotFoundError: a pinned DAG is incomplete. Deleting then could remove blocks the
            missing part links to, so gc refuses and deletes nothing.
        IntegrityError: an interior block of a pinned DAG is corrupt (same reasoning).
    """
    marks_path = store.root / f".gc-marks.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with contextlib.closing(sqlite3.connect(marks_path, isolation_level=None)) as marks:
            try:
                _mark(store, pins.roots(), marks)
            except BlockNotFoundError as exc:
                raise BlockNotFoundError(f"gc refused, nothing deleted: {exc}") from exc
            return _sweep(store, marks, list_removed=list_removed)
    except sqlite3.Error as exc:
        raise StoreError(f"gc could not keep its marks in {marks_path}: {exc}") from exc
    finally:
        marks_path.unlink(missing_ok=True)


def _mark(store: PackedBlockStore, roots: Iterable[CID], marks: sqlite3.Connection) -> None:
    """Record in ``marks`` the CIDv1 of every block reachable from ``roots`` (checked present).

    The same walk as :func:`~cats_runtime.cas.reachable` (raw leaves checked with ``has``,
    blocks with links read and verified), with its seen-set and stack kept in SQLite.
    """
    marks.execute("PRAGMA journal_mode=OFF")  # scratch data: a crash just discards the file
    marks.execute("PRAGMA synchronous=OFF")
    marks.execute("CREATE TABLE marked (k BLOB PRIMARY KEY) WITHOUT ROWID")
    marks.execute("CREATE TABLE todo (id INTEGER PRIMARY KEY, cid BLOB NOT NULL, parent BLOB)")
    marks.execute("BEGIN")
    marks.executemany("INSERT INTO todo (cid) VALUES (?)", ((root.buffer,) for root in roots))
    while True:
        rows = marks.execute("SELECT id, cid, parent FROM todo ORDER BY id DESC LIMIT 1024").fetchall()
        if not rows:
            break
        marks.execute("DELETE FROM todo WHERE id >= ?", (rows[-1][0],))
        for _, raw, parent_raw in rows:
            cid = CID.from_bytes(raw)
            if marks.execute("INSERT OR IGNORE INTO marked VALUES (?)", (cid.to_v1().buffer,)).rowcount == 0:
                continue
            via = f" (linked from {CID.from_bytes(parent_raw)})" if parent_raw is not None else ""
            if cid.codec == RAW:
                if cid.hash_code != IDENTITY and not store.has(cid):
                    raise BlockNotFoundError(f"block {cid}{via} is missing: the DAG is incomplete")
                continue
            try:
                data = cid.digest if cid.hash_code == IDENTITY else store.get(cid)
            except BlockNotFoundError as exc:
                raise BlockNotFoundError(f"block {cid}{via} is missing: the DAG is incomplete") from exc
            marks.executemany(
                "INSERT INTO todo (cid, parent) VALUES (?, ?)",
                ((child.buffer, raw) for child in links_of(cid, data)),
            )
    marks.execute("COMMIT")


def _sweep(store: PackedBlockStore, marks: sqlite3.Connection, *, list_removed: bool) -> GCResult:
    removed: list[CID] = []
    count = 0
    freed = 0
    kept = 0
    doomed: list[CID] = []
    sizes = 0
    for cid in store:  # streams; resumes after the last key it yielded, so deleting is safe
        if marks.execute("SELECT 1 FROM marked WHERE k = ?", (cid.buffer,)).fetchone() is not None:
            kept += 1
            continue
        try:
            sizes += store.size(cid)
        except BlockNotFoundError:
            continue  # removed by someone else meanwhile: same outcome
        doomed.append(cid)
        if len(doomed) >= _GC_BATCH:
            count += store.delete_many(doomed)
            if list_removed:
                removed.extend(doomed)
            freed += sizes
            doomed, sizes = [], 0
    if doomed:
        count += store.delete_many(doomed)
        if list_removed:
            removed.extend(doomed)
        freed += sizes
    store.remove_stale_temp_files()
    return GCResult(count, freed, kept, tuple(removed))


def _read_version(path: Path) -> int:
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text.isdigit():
        raise StoreError(f"expected a layout version number in {path}, found {text[:40]!r}")
    return int(text)


def _write_version(home: Path) -> None:
    tmp = home / f".version.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{LAYOUT_VERSION}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, home / "version")
    dfd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Repo:
    """A CATs home directory: a block store, its pins and the lock that orders adds and gc.

    Use :meth:`open`; the attributes are ``home``, ``blocks`` (:class:`PackedBlockStore`) and
    ``pins`` (:class:`PinStore`, which checks DAG completeness against ``blocks``).
    """

    def __init__(self, home: Path, blocks: PackedBlockStore, pins: PinStore) -> None:
        self.home = home
        self.blocks = blocks
        self.pins = pins
        self._lock_path = home / "repo.lock"

    def __repr__(self) -> str:
        return f"Repo({str(self.home)!r})"

    @classmethod
    def open(cls, home: Path | str, *, sync: bool = True) -> Repo:
        """Open the repository at ``home``, creating it when missing or empty.

        Args:
            home: the directory.
            sync: passed to :class:`PackedBlockStore` (durable before puts return).

        Raises:
            StoreError: ``home`` has a newer or unreadable layout version, or is a non-empty
                directory that is not a CATs repository.
        """
        home = Path(home).absolute()
        try:
            home.mkdir(parents=True, exist_ok=True)
            version_file = home / "version"
            if not version_file.exists():
                cls._init(home)
            found = _read_version(version_file)
        except StoreError:
            raise
        except OSError as exc:
            raise StoreError(f"cannot open CATs repository at {home}: {exc}") from exc
        if found not in _READABLE_VERSIONS:
            raise StoreError(
                f"expected repository layout version {LAYOUT_VERSION} at {home}, found {found}"
                + (": it was written by a newer CATs; upgrade CATs" if found > LAYOUT_VERSION else "")
            )
        blocks = PackedBlockStore(home / "blocks", sync=sync)
        if found != LAYOUT_VERSION:
            # Layout 1 is read in place (its block files are the file tier of layout 2); the new
            # version file keeps an older CATs, which would not see packed blocks, out.
            cls._upgrade(home, found)
        # A kill -9 of an add leaves its temporary files behind; they are invisible to reads but
        # take space forever unless someone removes them. Opening the home is the natural moment
        # (every command and the node do it); the store's rule spares live writers' files.
        with contextlib.suppress(OSError, StoreError):  # best effort: a read-only home still opens
            blocks.remove_stale_temp_files()
        pins = PinStore(home / "pins", source=blocks)
        return cls(home, blocks, pins)

    @staticmethod
    def _upgrade(home: Path, found: int) -> None:
        lock = home / "repo.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits for writers of the old layout to finish
            if _read_version(home / "version") == found:
                _write_version(home)
        except OSError as exc:
            raise StoreError(
                f"cannot upgrade the repository at {home} to layout {LAYOUT_VERSION}: {exc}"
            ) from exc
        finally:
            os.close(fd)

    @staticmethod
    def _init(home: Path) -> None:
        # Initialise under the exclusive lock so two processes creating the same home agree.
        lock = home / "repo.lock"
        created = not lock.exists()
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            version_file = home / "version"
            if version_file.exists():
                return
            foreign = sorted(
                name
                for name in os.listdir(home)
                if name not in _OWN_NAMES and not name.startswith(".version")
            )
            if foreign:
                if created:  # a refused directory is left exactly as the user had it
                    lock.unlink(missing_ok=True)
                raise StoreError(
                    f"expected an empty directory or a CATs repository at {home}, found {foreign[:5]} "
                    "and no version file"
                )
            (home / "blocks").mkdir(exist_ok=True)
            (home / "pins").mkdir(exist_ok=True)
            _write_version(home)
        finally:
            os.close(fd)  # closing releases the flock

    @contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        # A fresh open file description per holder: flock locks belong to it, so threads of one
        # process exclude each other exactly like separate processes do.
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open repository lock {self._lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold while adding blocks and pinning their root; many writers may hold it at once.

        Do not call :meth:`gc` while holding it in the same thread (it would wait for itself).
        """
        with self._flock(fcntl.LOCK_SH):
            yield

    @contextmanager
    def exclusive_lock(self) -> Iterator[None]:
        """Hold the repository alone (what :meth:`gc` does); waits for writers to finish."""
        with self._flock(fcntl.LOCK_EX):
            yield

    def gc(self, *, list_removed: bool = False) -> GCResult:
        """Delete unpinned blocks while holding the exclusive lock (see :func:`gc`)."""
        with self.exclusive_lock():
            return gc(self.blocks, self.pins, list_removed=list_removed)

    def migrate(self, progress: Callable[[int], None] | None = None) -> MigrateResult:
        """Pack the blocks a layout-1 repository keeps as files (see :meth:`PackedBlockStore.migrate`).

        Holds the shared write lock, so gc (which could otherwise see a block in neither place
        while it moves) waits; adds and reads go on.
        """
        with self.write_lock():
            return self.blocks.migrate(progress)

    def verify(self) -> VerifyReport:
        """Re-hash every block of the store (no lock needed: reads only)."""
        checked, corrupt = self.blocks.check()
        return VerifyReport(checked, tuple(corrupt))
