"""The catalog: a SQLite index of the records in a store, for queries by order, input, output, function.

The catalog is only an index. Every row can be recomputed from the blocks (:meth:`Catalog.rebuild`),
so records are always written to the block store *before* their rows, and rows of one run are
written in one transaction: an interrupted run leaves at worst unindexed blocks, never rows that
point at missing records.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..cas import CID, DAG_CBOR, BlockSource, _dagcbor
from ..errors import BlockNotFoundError, DecodeError, StoreError

if TYPE_CHECKING:
    from . import InvoiceRecord, OrderRecord

__all__ = ["CATALOG_FILE", "Catalog", "CatalogStats", "RunRow", "VerdictRow", "memo_entries", "memo_key"]

CATALOG_FILE: Final = "catalog.sqlite"
_SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (cid TEXT PRIMARY KEY, type TEXT NOT NULL, indexed_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS records_type ON records(type);
CREATE TABLE IF NOT EXISTS functions (cid TEXT PRIMARY KEY, name TEXT NOT NULL, code TEXT NOT NULL,
    entrypoint TEXT NOT NULL, mode TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (cid TEXT PRIMARY KEY, function TEXT NOT NULL, structure TEXT NOT NULL,
    seed INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS orders_function ON orders(function);
CREATE TABLE IF NOT EXISTS order_inputs (order_cid TEXT NOT NULL, name TEXT NOT NULL, input TEXT NOT NULL,
    PRIMARY KEY (order_cid, name));
CREATE INDEX IF NOT EXISTS order_inputs_input ON order_inputs(input);
CREATE TABLE IF NOT EXISTS invoices (cid TEXT PRIMARY KEY, order_cid TEXT NOT NULL, status TEXT NOT NULL,
    output TEXT, log TEXT, started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS invoices_order ON invoices(order_cid);
CREATE INDEX IF NOT EXISTS invoices_finished ON invoices(finished_ms);
CREATE TABLE IF NOT EXISTS boms (cid TEXT PRIMARY KEY, order_cid TEXT NOT NULL, invoice TEXT NOT NULL,
    function TEXT NOT NULL, structure TEXT NOT NULL, output TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS boms_order ON boms(order_cid);
CREATE INDEX IF NOT EXISTS boms_output ON boms(output);
CREATE INDEX IF NOT EXISTS boms_function ON boms(function);
CREATE INDEX IF NOT EXISTS boms_invoice ON boms(invoice);
CREATE TABLE IF NOT EXISTS bom_inputs (bom TEXT NOT NULL, name TEXT NOT NULL, input TEXT NOT NULL,
    PRIMARY KEY (bom, name));
CREATE INDEX IF NOT EXISTS bom_inputs_input ON bom_inputs(input);
CREATE TABLE IF NOT EXISTS bom_parents (bom TEXT NOT NULL, parent TEXT NOT NULL, PRIMARY KEY (bom, parent));
CREATE INDEX IF NOT EXISTS bom_parents_parent ON bom_parents(parent);
CREATE TABLE IF NOT EXISTS verifications (cid TEXT PRIMARY KEY, bom TEXT NOT NULL, invoice TEXT NOT NULL,
    verdict TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS verifications_bom ON verifications(bom);
CREATE TABLE IF NOT EXISTS memo (key TEXT PRIMARY KEY, function TEXT NOT NULL, datum TEXT NOT NULL,
    output TEXT NOT NULL, invoice TEXT NOT NULL);
"""

_MEMO_INSERT: Final = (
    "INSERT OR REPLACE INTO memo(key, function, datum, output, invoice) VALUES (?, ?, ?, ?, ?)"
)
_TABLES: Final = (
    "records",
    "functions",
    "orders",
    "order_inputs",
    "invoices",
    "boms",
    "bom_inputs",
    "bom_parents",
    "verifications",
    "memo",
)


def memo_key(
    function: CID,
    params: Mapping[str, Any],
    seed: int,
    input_name: str,
    datum_name: str,
    datum: CID,
    context: Mapping[str, CID],
) -> str:
    """The memoization key of one datum: what fully determines its output.

    Besides the Function, params, seed and datum CID, the key holds the datum's *name* (a
    function may name its output files after it) and the CIDs of the other inputs the function
    sees next to the datum (``context``): leaving either out would let a memo hit return an
    output computed from different information.
    """
    value = {
        "function": function,
        "params": dict(params),
        "seed": seed,
        "input": input_name,
        "name": datum_name,
        "datum": datum,
        "context": dict(context),
    }
    return hashlib.sha256(_dagcbor.encode(value)).hexdigest()


@dataclass(frozen=True)
class RunRow:
    """One run as ``cats ls`` shows it (an Invoice, with its BOM when it succeeded)."""

    invoice: CID
    order: CID
    status: str
    bom: CID | None
    function: CID
    function_name: str
    output: CID | None
    finished_ms: int
    error: str | None


@dataclass(frozen=True)
class VerdictRow:
    """What the Verifications of one BOM say (see :meth:`Catalog.verdict_for`).

    Attributes:
        verdict: ``match``, ``mismatch`` or ``error``.
        verification: The Verification record behind the verdict.
        count: How many Verifications the BOM has.
    """

    verdict: str
    verification: CID
    count: int


@dataclass(frozen=True)
class CatalogStats:
    """What :meth:`Catalog.rebuild` found."""

    blocks: int
    records: int
    by_type: dict[str, int]


def _s(cid: CID | None) -> str | None:
    return None if cid is None else str(cid)


def _c(text: str | None) -> CID | None:
    return None if text is None else CID.decode(text)


_CHUNK: Final = 500
"""Keys per statement of a batched query: well under SQLite's smallest parameter limit (999)."""


class _TextCIDs:
    """CIDs parsed from the catalog's text, each distinct text once (a run reached by many edges)."""

    __slots__ = ("_cids",)

    def __init__(self) -> None:
        self._cids: dict[str, CID] = {}

    def cid(self, text: str) -> CID:
        found = self._cids.get(text)
        if found is None:
            found = self._cids[text] = CID.decode(text)
        return found


def _verdict(rows: Iterable[tuple[Any, ...]]) -> VerdictRow:
    """The standing verdict among ``(verification, verdict, finished_ms)`` rows (not empty)."""
    listed = list(rows)
    rank = {"mismatch": 2, "error": 1, "match": 0}
    cid, verdict, _ = max(listed, key=lambda r: (rank.get(r[1], 0), r[2], r[0]))
    return VerdictRow(str(verdict), CID.decode(cid), len(listed))


class Catalog:
    """A SQLite (WAL) index of CATs records; safe to share between threads of one process.

    Args:
        path: The database file (created with its schema on first use).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=OFF")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(_SCHEMA_VERSION),)
            )
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the catalog {path}: {exc}") from exc
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all (Ctrl-C included)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write the catalog {self.path}: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def index(
        self, records: Iterable[tuple[CID, Any]], memo: Iterable[tuple[str, CID, CID, CID, CID]] = ()
    ) -> None:
        """Index records (already stored as blocks) and memo entries in one transaction.

        Args:
            records: ``(cid, record)`` pairs of any CATs record type.
            memo: ``(key, function, datum, output, invoice)`` memo entries.
        """
        with self.transaction() as db:
            for cid, record in records:
                self._index_one(db, cid, record)
            for key, function, datum, output, invoice in memo:
                db.execute(
                    _MEMO_INSERT,
                    (key, str(function), str(datum), str(output), str(invoice)),
                )

    def _index_one(self, db: sqlite3.Connection, cid: CID, record: Any) -> None:
        from . import (
            BOMRecord,
            EnvironmentRecord,
            FunctionRecord,
            InvoiceRecord,
            OrderRecord,
            StructureRecord,
            VerificationRecord,
        )

        c = str(cid)
        now = time.time_ns() // 1_000_000
        db.execute(
            "INSERT OR IGNORE INTO records(cid, type, indexed_ms) VALUES (?, ?, ?)", (c, record.TYPE, now)
        )
        if isinstance(record, FunctionRecord):
            db.execute(
                "INSERT OR IGNORE INTO functions VALUES (?, ?, ?, ?, ?)",
                (c, record.name, str(record.code), record.entrypoint, record.mode),
            )
        elif isinstance(record, OrderRecord):
            db.execute(
                "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?)",
                (c, str(record.function), str(record.structure), record.seed),
            )
            db.executemany(
                "INSERT OR IGNORE INTO order_inputs VALUES (?, ?, ?)",
                [(c, name, str(v)) for name, v in record.inputs.items()],
            )
        elif isinstance(record, InvoiceRecord):
            db.execute(
                "INSERT OR IGNORE INTO invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c,
                    str(record.order),
                    record.status,
                    _s(record.output),
                    _s(record.log),
                    record.started_ms,
                    record.finished_ms,
                    record.error,
                ),
            )
        elif isinstance(record, BOMRecord):
            db.execute(
                "INSERT OR IGNORE INTO boms VALUES (?, ?, ?, ?, ?, ?)",
                (
                    c,
                    str(record.order),
                    str(record.invoice),
                    str(record.function),
                    str(record.structure),
                    str(record.output),
                ),
            )
            db.executemany(
                "INSERT OR IGNORE INTO bom_inputs VALUES (?, ?, ?)",
                [(c, name, str(v)) for name, v in record.inputs.items()],
            )
            db.executemany(
                "INSERT OR IGNORE INTO bom_parents VALUES (?, ?)", [(c, str(p)) for p in record.parents]
            )
        elif isinstance(record, VerificationRecord):
            db.execute(
                "INSERT OR IGNORE INTO verifications VALUES (?, ?, ?, ?)",
                (c, str(record.bom), str(record.invoice), record.verdict),
            )
        elif not isinstance(record, StructureRecord | EnvironmentRecord):
            raise TypeError(f"expected a CATs record, found {type(record).__name__}")

    # -- queries ----------------------------------------------------------------------------
    def _col(self, sql: str, *args: Any) -> list[CID]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [CID.decode(r[0]) for r in rows]

    def record_type(self, cid: CID) -> str | None:
        """The ``type`` of an indexed record, or None when the CID is not an indexed record."""
        with self._lock:
            row = self._db.execute("SELECT type FROM records WHERE cid = ?", (str(cid),)).fetchone()
        return None if row is None else str(row[0])

    def boms_for_order(self, order: CID) -> list[CID]:
        """BOMs of successful runs of ``order``, newest first."""
        return self._col(
            "SELECT b.cid FROM boms b JOIN invoices i ON i.cid = b.invoice WHERE b.order_cid = ? "
            "ORDER BY i.finished_ms DESC, b.cid",
            str(order),
        )

    def invoices_for_order(self, order: CID) -> list[CID]:
        """Invoices (succeeded and failed) of ``order``, newest first."""
        return self._col(
            "SELECT cid FROM invoices WHERE order_cid = ? ORDER BY finished_ms DESC, cid", str(order)
        )

    def bom_for_invoice(self, invoice: CID) -> CID | None:
        """The BOM that records ``invoice``, if the run succeeded."""
        found = self._col("SELECT cid FROM boms WHERE invoice = ?", str(invoice))
        return found[0] if found else None

    def producers(self, output: CID) -> list[CID]:
        """BOMs whose output is ``output`` (the runs that made this data)."""
        return self._col("SELECT cid FROM boms WHERE output = ? ORDER BY cid", str(output))

    def producers_oldest_first(self, output: CID) -> list[CID]:
        """BOMs whose output is ``output``, the earliest run first (stable choice of a parent)."""
        return self._col(
            "SELECT b.cid FROM boms b JOIN invoices i ON i.cid = b.invoice WHERE b.output = ? "
            "ORDER BY i.finished_ms, b.cid",
            str(output),
        )

    def consumers(self, data: CID) -> list[CID]:
        """BOMs that took ``data`` as one of their inputs."""
        return self._col("SELECT DISTINCT bom FROM bom_inputs WHERE input = ? ORDER BY bom", str(data))

    def children(self, bom: CID) -> list[CID]:
        """BOMs that list ``bom`` among their parents."""
        return self._col("SELECT bom FROM bom_parents WHERE parent = ? ORDER BY bom", str(bom))

    def boms_for_function(self, function: CID) -> list[CID]:
        """BOMs of runs of ``function``."""
        return self._col("SELECT cid FROM boms WHERE function = ? ORDER BY cid", str(function))

    def boms_for_input(self, data: CID) -> list[CID]:
        """Alias of :meth:`consumers`, named for symmetry with the other queries."""
        return self.consumers(data)

    def verifications_for(self, bom: CID) -> list[CID]:
        """Verification records about ``bom``."""
        return self._col("SELECT cid FROM verifications WHERE bom = ? ORDER BY cid", str(bom))

    def verdict_for(self, bom: CID) -> VerdictRow | None:
        """The verdict that stands for ``bom``'s re-executions, or None when it was never re-executed.

        The worst verdict wins (``mismatch`` over ``error`` over ``match``): a BOM that once
        failed to reproduce is not reproducible, even if a later re-execution matched. Among
        Verifications of that verdict the newest (by its re-execution's Invoice) is named.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT v.cid, v.verdict, COALESCE(i.finished_ms, 0) FROM verifications v "
                "LEFT JOIN invoices i ON i.cid = v.invoice WHERE v.bom = ?",
                (str(bom),),
            ).fetchall()
        return _verdict(rows) if rows else None

    # -- batched queries: one statement per chunk of keys, for walks over thousands of nodes --
    def _grouped(self, sql: str, keys: Iterable[CID]) -> dict[CID, list[tuple[Any, ...]]]:
        """Rows of ``sql`` (a ``SELECT key, ... WHERE key IN ({marks})``) grouped by key, in row order.

        Keys are sent as text in chunks (SQLite bounds the number of parameters); every key asked
        for is in the result, with an empty list when it has no rows.
        """
        by_text = {str(k): k for k in keys}
        texts = list(by_text)
        found: dict[CID, list[tuple[Any, ...]]] = {k: [] for k in by_text.values()}
        with self._lock:
            for i in range(0, len(texts), _CHUNK):
                chunk = texts[i : i + _CHUNK]
                statement = sql.format(marks=",".join("?" * len(chunk)))
                for row in self._db.execute(statement, chunk):
                    found[by_text[row[0]]].append(row[1:])
        return found

    def producers_many(self, outputs: Iterable[CID]) -> dict[CID, list[CID]]:
        """:meth:`producers` of many data CIDs in a few statements (each list ordered the same)."""
        rows = self._grouped(
            "SELECT output, cid FROM boms WHERE output IN ({marks}) ORDER BY output, cid", outputs
        )
        texts = _TextCIDs()
        return {data: [texts.cid(r[0]) for r in found] for data, found in rows.items()}

    def consumers_many(self, datas: Iterable[CID]) -> dict[CID, list[CID]]:
        """:meth:`consumers` of many data CIDs in a few statements (each list ordered the same)."""
        rows = self._grouped(
            "SELECT DISTINCT input, bom FROM bom_inputs WHERE input IN ({marks}) ORDER BY input, bom", datas
        )
        texts = _TextCIDs()
        return {data: [texts.cid(r[0]) for r in found] for data, found in rows.items()}

    def verdicts_for(self, boms: Iterable[CID]) -> dict[CID, VerdictRow]:
        """:meth:`verdict_for` of many BOMs in a few statements; BOMs never re-executed are left out."""
        rows = self._grouped(
            "SELECT v.bom, v.cid, v.verdict, COALESCE(i.finished_ms, 0) FROM verifications v "
            "LEFT JOIN invoices i ON i.cid = v.invoice WHERE v.bom IN ({marks})",
            boms,
        )
        return {bom: _verdict(found) for bom, found in rows.items() if found}

    def memo_get(self, key: str) -> CID | None:
        """The output CID memoized under ``key``, if any."""
        with self._lock:
            row = self._db.execute("SELECT output FROM memo WHERE key = ?", (key,)).fetchone()
        return None if row is None else CID.decode(row[0])

    def memo_get_many(self, keys: Iterable[str]) -> dict[str, CID]:
        """Memoized outputs of many keys at once (map runs ask for thousands)."""
        wanted = list(keys)
        found: dict[str, CID] = {}
        with self._lock:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT key, output FROM memo WHERE key IN ({marks})"  # noqa: S608 (placeholders only)
                for key, output in self._db.execute(sql, chunk):
                    found[key] = CID.decode(output)
        return found

    def runs(self, limit: int | None = None) -> list[RunRow]:
        """Runs (Invoices) newest first, with their BOM and Function name."""
        return list(self.iter_runs(limit))

    def iter_runs(self, limit: int | None = None, *, page: int = 500) -> Iterator[RunRow]:
        """:meth:`runs` one page at a time: memory stays flat however many runs the catalog holds.

        Pages are keyed on the sort order (finished time, then CID), so runs added meanwhile never
        shift a page and no run is listed twice; the lock is held only while a page is read.
        """
        select = (
            "SELECT i.cid, i.order_cid, i.status, b.cid, o.function, COALESCE(f.name, ''), i.output, "
            "i.finished_ms, i.error FROM invoices i JOIN orders o ON o.cid = i.order_cid "
            "LEFT JOIN boms b ON b.invoice = i.cid LEFT JOIN functions f ON f.cid = o.function "
            "WHERE i.cid NOT IN (SELECT invoice FROM verifications) "
        )
        after: tuple[int, str] | None = None
        params: tuple[Any, ...]
        left = limit
        while left is None or left > 0:
            size = page if left is None else min(page, left)
            if after is None:
                sql, params = select + "ORDER BY i.finished_ms DESC, i.cid LIMIT ?", (size,)
            else:
                sql = select + (
                    "AND (i.finished_ms < ? OR (i.finished_ms = ? AND i.cid > ?)) "
                    "ORDER BY i.finished_ms DESC, i.cid LIMIT ?"
                )
                params = (after[0], after[0], after[1], size)
            with self._lock:
                rows = self._db.execute(sql, params).fetchall()
            for r in rows:
                yield RunRow(
                    CID.decode(r[0]),
                    CID.decode(r[1]),
                    r[2],
                    _c(r[3]),
                    CID.decode(r[4]),
                    r[5],
                    _c(r[6]),
                    r[7],
                    r[8],
                )
            if len(rows) < size:
                return
            after = (rows[-1][7], rows[-1][0])
            if left is not None:
                left -= len(rows)

    def counts(self) -> dict[str, int]:
        """Rows per table (for ``cats catalog rebuild`` and tests)."""
        with self._lock:
            return {t: int(self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in _TABLES}  # noqa: S608

    # -- rebuilding -------------------------------------------------------------------------
    def rebuild(self, source: BlockSource, cids: Iterable[CID]) -> CatalogStats:
        """Recreate every row from the blocks: scan ``cids``, decode each DAG-CBOR ``cats/...`` record.

        Memo entries are recomputed from Invoices and their Orders. Everything happens in one
        transaction, so readers see the old catalog until the new one is complete.
        """
        from . import InvoiceRecord, OrderRecord, decode_record
        from ._records import record_from_decoded

        # Streaming: each record is indexed as it is decoded (memory stays flat whatever the
        # store holds); the memo is derived afterwards from the rows just written, re-reading
        # only the Invoices it needs and their Orders.
        by_type: dict[str, int] = {}
        blocks = 0
        indexed = 0
        with self.transaction() as db:
            for table in _TABLES:
                db.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed table names)
            for cid in cids:
                blocks += 1
                if cid.codec != DAG_CBOR:
                    continue
                data = source.get(cid)
                try:
                    value = _dagcbor.decode(data)
                except DecodeError:
                    continue
                if not isinstance(value, dict) or not str(value.get("type", "")).startswith("cats/"):
                    continue
                try:
                    record = record_from_decoded(value, data)  # decoded once, not twice
                except DecodeError:
                    continue  # a cats/ lookalike that is not a valid record is not indexed
                self._index_one(db, cid, record)
                indexed += 1
                by_type[record.TYPE] = by_type.get(record.TYPE, 0) + 1
            # Re-executions made by `verify` never feed the memo (a mismatch must not replace outputs).
            pending = db.execute(
                "SELECT cid, order_cid FROM invoices WHERE cid NOT IN (SELECT invoice FROM verifications)"
            )
            writer = db.cursor()
            for invoice_text, order_text in pending:
                invoice = decode_record(source.get(CID.decode(invoice_text)))
                try:
                    order = decode_record(source.get(CID.decode(order_text)))
                except (BlockNotFoundError, DecodeError):
                    continue  # an Invoice whose Order is not here justifies no memo entry
                if isinstance(invoice, InvoiceRecord) and isinstance(order, OrderRecord):
                    for key, function_cid, datum, output, inv in memo_entries(
                        CID.decode(invoice_text), invoice, order
                    ):
                        writer.execute(
                            _MEMO_INSERT, (key, str(function_cid), str(datum), str(output), str(inv))
                        )
        return CatalogStats(blocks, indexed, by_type)


def memo_entries(
    invoice_cid: CID, invoice: InvoiceRecord, order: OrderRecord
) -> list[tuple[str, CID, CID, CID, CID]]:
    """Memo entries an Invoice justifies: one per datum that succeeded (computed or memoized)."""
    out: list[tuple[str, CID, CID, CID, CID]] = []
    for d in invoice.data:
        if d.status != "succeeded" or d.output is None:
            continue
        context = {k: v for k, v in order.inputs.items() if k != d.input}
        key = memo_key(order.function, order.params, order.seed, d.input, d.name, d.cid, context)
        out.append((key, order.function, d.cid, d.output, invoice_cid))
    return out
