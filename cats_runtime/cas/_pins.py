"""Recursive pins: the roots whose whole DAG garbage collection must keep.

Pins live in a SQLite database in WAL mode with ``synchronous=FULL``. SQLite was chosen over
an atomic JSON file because several processes pin at once (a CLI add while a node serves
runs): SQLite gives atomic, durable, crash-safe single-row updates with its own cross-process
locking, whereas a JSON file would be rewritten whole under an external lock for every pin,
which grows linearly with the number of runs. It ships with Python, so it costs no dependency.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import InvalidInputError, NotFoundError, StoreError
from ._cid import CID, DAG_CBOR
from ._store import BlockSource
from ._walk import reachable

__all__ = ["Pin", "PinStore"]

_DB_NAME: Final = "pins.sqlite"
_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS pins (
    key BLOB PRIMARY KEY,        -- CIDv1 bytes: a CIDv0 and its CIDv1 are one pin
    cid BLOB NOT NULL,           -- the CID as the user gave it (kept for display)
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID
"""


@dataclass(frozen=True, slots=True)
class Pin:
    """A recursive pin.

    Attributes:
        cid: the pinned root, as it was pinned (CIDv0 stays CIDv0).
        name: an optional label ("" when none).
        created_ms: when the pin was (last) added, milliseconds since the epoch.
    """

    cid: CID
    name: str
    created_ms: int


class PinStore:
    """The set of recursively pinned roots, stored in ``root/pins.sqlite``.

    Args:
        root: the directory (created if missing).
        source: where the pinned DAGs live; when given, :meth:`add` refuses a root whose DAG
            is not complete in it (so gc can never be told to keep a half-present DAG).

    Raises:
        StoreError: the database cannot be opened or has a newer schema.
    """

    def __init__(self, root: Path | str, source: BlockSource | None = None) -> None:
        self.root = Path(root)
        self.source = source
        self.path = self.root / _DB_NAME
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                found = db.execute("PRAGMA user_version").fetchone()[0]
                if found > _SCHEMA_VERSION:
                    raise StoreError(
                        f"expected pin database schema version <= {_SCHEMA_VERSION} in {self.path}, "
                        f"found {found}: this CATs is older than the repository"
                    )
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open pin database {self.path}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot create pin directory {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"PinStore({str(self.root)!r})"

    @contextmanager
    def _connect(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        # A connection per operation: safe across threads and forked processes, and cheap next
        # to the DAG walk that precedes every add.
        with closing(sqlite3.connect(self.path, timeout=60.0, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add(self, cid: CID, name: str = "") -> Pin:
        """Pin ``cid`` recursively (re-pinning updates the name).

        Raises:
            BlockNotFoundError: ``source`` is set and a block of the DAG is missing (named).
            IntegrityError: an interior block of the DAG is corrupt.
            InvalidInputError: ``name`` is not a single line of text.
        """
        if not isinstance(cid, CID):
            raise InvalidInputError(f"expected a CID to pin, found {type(cid).__name__}")
        if "\n" in name or "\x00" in name:
            raise InvalidInputError(f"expected a one-line pin name, found {name!r}")
        if self.source is not None:
            # A pinned root was complete when pinned and gc keeps it so: a DAG linking one (a
            # run's parent BOM) is checked down to it, not through it, or a chain of D runs would
            # walk O(D^2) blocks. Only records (dag-cbor) are looked up: UnixFS interiors are
            # never pin roots worth a query per block.
            with self._connect(write=False) as db:

                def pinned(c: CID) -> bool:
                    if c.codec != DAG_CBOR:
                        return False
                    return (
                        db.execute("SELECT 1 FROM pins WHERE key = ?", (c.to_v1().buffer,)).fetchone()
                        is not None
                    )

                reachable(self.source, [cid], known_complete=pinned)
        pin = Pin(cid, name, int(time.time() * 1000))
        try:
            with self._connect() as db:
                db.execute(
                    "INSERT INTO pins (key, cid, name, created_ms) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET cid=excluded.cid, name=excluded.name, "
                    "created_ms=excluded.created_ms",
                    (cid.to_v1().buffer, cid.buffer, name, pin.created_ms),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write pin {cid} to {self.path}: {exc}") from exc
        return pin

    def remove(self, cid: CID) -> None:
        """Unpin ``cid`` (its blocks go at the next gc unless another pin reaches them).

        Raises:
            NotFoundError: ``cid`` is not pinned.
        """
        try:
            with self._connect() as db:
                deleted = db.execute("DELETE FROM pins WHERE key = ?", (cid.to_v1().buffer,)).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot remove pin {cid} from {self.path}: {exc}") from exc
        if not deleted:
            raise NotFoundError(f"expected {cid} to be pinned, found no such pin in {self.path}")

    def ls(self) -> list[Pin]:
        """Every pin, oldest first."""
        try:
            with self._connect(write=False) as db:
                rows = db.execute(
                    "SELECT cid, name, created_ms FROM pins ORDER BY created_ms, key"
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read pins from {self.path}: {exc}") from exc
        return [Pin(CID.from_bytes(bytes(raw)), name, created) for raw, name, created in rows]

    def roots(self) -> list[CID]:
        """The pinned CIDs."""
        return [pin.cid for pin in self.ls()]

    def __contains__(self, cid: object) -> bool:
        if not isinstance(cid, CID):
            return False
        try:
            with self._connect(write=False) as db:
                row = db.execute("SELECT 1 FROM pins WHERE key = ?", (cid.to_v1().buffer,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read pins from {self.path}: {exc}") from exc
        return row is not None

    def __len__(self) -> int:
        try:
            with self._connect(write=False) as db:
                count: int = db.execute("SELECT COUNT(*) FROM pins").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read pins from {self.path}: {exc}") from exc
        return count
