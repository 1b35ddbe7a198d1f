"""Runs accepted by a node: persisted in SQLite, executed by a bounded pool, recovered after a crash.

Every accepted Order gets a row in ``<home>/node/runs.sqlite`` *before* the 202 answer, so an
accepted run is never lost: it ends ``succeeded`` or ``failed``, even if the node dies. On start,
rows a dead process left ``queued``, ``fetching`` or ``running`` are settled: if the catalog shows
the run finished (its Invoice was indexed after the run started) the row takes that outcome,
otherwise it is marked ``failed`` with the reason. One node process per home is enforced with
an exclusive lock on ``<home>/node/node.lock``, so "a row left running" always means "by a dead
process".

Concurrency: at most ``max_concurrent_runs`` execute at once; up to ``max_queued_runs`` more
wait in a FIFO queue; beyond that submission is refused with 429 (``LimitError``) and
``Retry-After`` — bounded queue, then refuse, never unbounded growth.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from ..cas import CID
from ..errors import CatsError, LimitError, NotFoundError, StoreError

__all__ = ["RunInfo", "RunManager", "RunResult", "RunStore", "hold_node_lock"]

log = logging.getLogger(__name__)

RunStatus = Literal["queued", "fetching", "running", "succeeded", "failed"]
ACTIVE: Final = ("queued", "fetching", "running")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    order_cid TEXT NOT NULL,
    org TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'fetching', 'running', 'succeeded', 'failed')),
    source TEXT,
    allowed_by TEXT NOT NULL,
    submitted_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    invoice TEXT,
    bom TEXT,
    output TEXT,
    error TEXT,
    pid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_order ON runs(order_cid);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_submitted ON runs(submitted_ms);
"""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class RunInfo:
    """One accepted Order and what became of it."""

    id: str
    order: CID
    org: str
    status: RunStatus
    allowed_by: str
    submitted_ms: int
    source: str | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    invoice: CID | None = None
    bom: CID | None = None
    output: CID | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (CIDs as text)."""
        return {
            "run": self.id,
            "order": str(self.order),
            "org": self.org,
            "status": self.status,
            "allowed_by": self.allowed_by,
            "source": self.source,
            "submitted_ms": self.submitted_ms,
            "started_ms": self.started_ms,
            "finished_ms": self.finished_ms,
            "invoice": None if self.invoice is None else str(self.invoice),
            "bom": None if self.bom is None else str(self.bom),
            "output": None if self.output is None else str(self.output),
            "error": self.error,
        }


@dataclass(frozen=True)
class RunResult:
    """What executing a run produced."""

    status: Literal["succeeded", "failed"]
    invoice: CID | None = None
    bom: CID | None = None
    output: CID | None = None
    error: str | None = None


def _cid(text: str | None) -> CID | None:
    return None if text is None else CID.decode(text)


class RunStore:
    """The ``runs`` table (SQLite, WAL) shared by the request handlers and the workers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an accepted run must survive a crash
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the runs database {path}: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"runs database {self.path}: {exc}") from exc

    @staticmethod
    def _row(row: tuple[Any, ...]) -> RunInfo:
        (
            rid,
            order,
            org,
            status,
            source,
            allowed_by,
            submitted,
            started,
            finished,
            invoice,
            bom,
            output,
            error,
        ) = row
        return RunInfo(
            rid,
            CID.decode(order),
            org,
            status,
            allowed_by,
            submitted,
            source,
            started,
            finished,
            _cid(invoice),
            _cid(bom),
            _cid(output),
            error,
        )

    _COLUMNS: Final = (
        "id, order_cid, org, status, source, allowed_by, submitted_ms, started_ms, finished_ms, "
        "invoice, bom, output, error"
    )

    def insert(self, run: RunInfo) -> None:
        """Record a newly accepted run."""
        with self._tx() as db:
            db.execute(
                f"INSERT INTO runs ({self._COLUMNS}, pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                (
                    run.id,
                    str(run.order),
                    run.org,
                    run.status,
                    run.source,
                    run.allowed_by,
                    run.submitted_ms,
                    run.started_ms,
                    run.finished_ms,
                    None,
                    None,
                    None,
                    run.error,
                    os.getpid(),
                ),
            )

    def update(self, run: RunInfo) -> None:
        """Store a run's new status and results."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status=?, allowed_by=?, started_ms=?, finished_ms=?, invoice=?, bom=?, "
                "output=?, error=? WHERE id=?",
                (
                    run.status,
                    run.allowed_by,
                    run.started_ms,
                    run.finished_ms,
                    _s(run.invoice),
                    _s(run.bom),
                    _s(run.output),
                    run.error,
                    run.id,
                ),
            )

    def get(self, run_id: str) -> RunInfo:
        """One run.

        Raises:
            NotFoundError: No run has that id.
        """
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM runs WHERE id=?",  # noqa: S608  (constant columns)
                (run_id,),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"expected the id of a run of this node, found unknown run {run_id[:64]!r}")
        return self._row(row)

    def recent(self, limit: int = 50, status: str | None = None, org: str | None = None) -> list[RunInfo]:
        """The newest runs first (of one organization when ``org`` is given)."""
        sql = f"SELECT {self._COLUMNS} FROM runs"  # noqa: S608
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("status=?")
            args.append(status)
        if org is not None:
            where.append("org=?")
            args.append(org)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY submitted_ms DESC, rowid DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    def active_for_order(self, order: CID) -> RunInfo | None:
        """A queued or running run of the same Order, if any."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM runs WHERE order_cid=? AND status IN (?,?,?) "  # noqa: S608
                "ORDER BY submitted_ms LIMIT 1",
                (str(order), *ACTIVE),
            ).fetchone()
        return None if row is None else self._row(row)

    def active(self) -> list[RunInfo]:
        """Runs not yet settled, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM runs WHERE status IN (?,?,?) ORDER BY submitted_ms",  # noqa: S608
                ACTIVE,
            ).fetchall()
        return [self._row(r) for r in rows]


def _s(cid: CID | None) -> str | None:
    return None if cid is None else str(cid)


@contextmanager
def hold_node_lock(home: Path) -> Iterator[None]:
    """Hold ``<home>/node/node.lock`` exclusively: one serving process per home.

    Raises:
        StoreError: Another process is serving this home.
    """
    path = home / "node" / "node.lock"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"expected no other node serving {home}, found {path} locked by another process"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


Recover = Callable[[RunInfo], RunResult | None]
Execute = Callable[[RunInfo, Callable[[RunInfo], None]], RunResult]


@dataclass
class _Slots:
    capacity: int
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class RunManager:
    """Accepts runs (bounded), executes them on worker threads, and records every transition.

    Args:
        store: The runs table.
        execute: Runs one Order; called on a worker thread with the run and a callback to
            record intermediate statuses (``fetching`` -> ``running``). Its CatsErrors become a
            ``failed`` run with the message; anything else too, with the exception type.
        max_concurrent: Worker threads (runs executing at once).
        max_queued: Runs allowed to wait beyond those executing.
    """

    def __init__(self, store: RunStore, execute: Execute, *, max_concurrent: int, max_queued: int) -> None:
        self.store = store
        self._execute = execute
        self._queue: queue.Queue[RunInfo | None] = queue.Queue()
        self._slots = _Slots(max_concurrent + max_queued)
        self._workers = [
            threading.Thread(target=self._work, name=f"cats-run-{i}", daemon=True)
            for i in range(max_concurrent)
        ]
        self._started = False

    def recover(self, settle: Recover) -> list[RunInfo]:
        """Settle runs a previous process left unfinished; returns them as now recorded.

        Args:
            settle: Looks for evidence that a run finished (its Invoice in the catalog); returns
                that result, or None when there is none.
        """
        settled: list[RunInfo] = []
        for run in self.store.active():
            try:
                found = settle(run)
            except CatsError as exc:
                log.warning("cannot check run %s for a finished Invoice: %s", run.id, exc)
                found = None
            if found is None:
                done = replace(
                    run,
                    status="failed",
                    finished_ms=_now_ms(),
                    error=(
                        f"the node stopped while this run was {run.status} (process died or was killed); "
                        "resubmit the Order to run it again"
                    ),
                )
            else:
                done = replace(
                    run,
                    status=found.status,
                    finished_ms=run.finished_ms or _now_ms(),
                    invoice=found.invoice,
                    bom=found.bom,
                    output=found.output,
                    error=found.error,
                )
            self.store.update(done)
            settled.append(done)
        return settled

    def start(self) -> None:
        """Start the worker threads."""
        if not self._started:
            self._started = True
            for worker in self._workers:
                worker.start()

    def stop(self) -> None:
        """Ask the workers to stop after their current run.

        Runs still queued stay queued in the table and are settled as failed by the next start.
        """
        for _ in self._workers:
            self._queue.put(None)

    def has_room(self) -> bool:
        """True when a new run would be accepted right now."""
        with self._slots.lock:
            return self._slots.in_flight < self._slots.capacity

    def check_room(self) -> None:
        """Refuse early (before reading a large body) when the queue is full.

        Raises:
            LimitError: Every run slot and queue place is taken.
        """
        if not self.has_room():
            raise LimitError(
                f"expected a free run slot, found {self._slots.capacity} runs executing or queued; "
                "retry later"
            )

    def submit(
        self,
        order: CID,
        org: str,
        allowed_by: str,
        source: str | None,
        prepare: Callable[[RunInfo], None] | None = None,
        *,
        held: bool = False,
    ) -> tuple[RunInfo, bool]:
        """Accept a run of ``order``, or return the active run of the same Order.

        Args:
            order: The Order.
            org: The submitting organization.
            allowed_by: Why its Function may run (the allow-list rule that matched).
            source: The (credential-free) gateway URL its blocks come from, if any.
            prepare: Called with the new run once its slot is reserved and before it is
                recorded (outside the lock: it may store a large CAR). A node stores the
                submitted blocks here, so a refused submission (queue full, or an identical
                Order already in flight, whose blocks are the same) stores none. If it raises,
                the slot is freed and nothing is recorded.
            held: Record it as ``fetching`` and do not queue it yet: the caller fetches its
                blocks, then calls :meth:`release` (or :meth:`abandon`).

        Returns:
            The run, and whether it is new (False: an identical Order is already queued/running).

        Raises:
            LimitError: The queue is full.
        """
        with self._slots.lock:
            existing = self.store.active_for_order(order)
            if existing is not None:
                return existing, False
            if self._slots.in_flight >= self._slots.capacity:
                raise LimitError(
                    f"expected a free run slot, found {self._slots.capacity} runs executing or queued; "
                    "retry later"
                )
            now = _now_ms()
            run = RunInfo(uuid.uuid4().hex, order, org, "queued", allowed_by, now, source)
            if held:
                run = replace(run, status="fetching", started_ms=now)
            if prepare is None:
                self.store.insert(run)  # persisted before the 202: accepted means recorded
                self._slots.in_flight += 1
                if not held:
                    self._queue.put(run)
                return run, True
            # Reserved, freed below if the run is not recorded. Two identical Orders prepared at
            # the same moment become two runs (the same blocks, stored twice over): harmless.
            self._slots.in_flight += 1
        try:
            prepare(run)
            self.store.insert(run)
        except BaseException:
            with self._slots.lock:
                self._slots.in_flight -= 1
            raise
        if not held:
            self._queue.put(run)
        return run, True

    def release(self, run: RunInfo) -> None:
        """Queue a held run for execution (its blocks are now local)."""
        queued = replace(run, status="queued")
        self.store.update(queued)
        self._queue.put(queued)

    def abandon(self, run: RunInfo, error: str) -> None:
        """End a held run as failed (its blocks could not be fetched) and free its slot."""
        try:
            self.store.update(replace(run, status="failed", finished_ms=_now_ms(), error=error))
        finally:
            with self._slots.lock:
                self._slots.in_flight -= 1

    def _work(self) -> None:
        while True:
            run = self._queue.get()
            if run is None:
                return
            try:
                self._run_one(run)
            finally:
                with self._slots.lock:
                    self._slots.in_flight -= 1

    def _run_one(self, run: RunInfo) -> None:
        current = replace(run, status="running", started_ms=run.started_ms or _now_ms())

        def record(update: RunInfo) -> None:
            nonlocal current
            current = update
            self.store.update(update)

        try:
            record(current)
            result = self._execute(current, record)
        except CatsError as exc:
            log.warning("run %s of Order %s failed: %s", run.id, run.order, exc)
            result = RunResult("failed", error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug, or a foreign library error: the run still ends
            log.exception("run %s of Order %s crashed", run.id, run.order)
            result = RunResult("failed", error=f"internal error {type(exc).__name__}: {exc}")
        try:
            self.store.update(
                replace(
                    current,
                    status=result.status,
                    finished_ms=_now_ms(),
                    invoice=result.invoice,
                    bom=result.bom,
                    output=result.output,
                    error=result.error,
                )
            )
        except CatsError:
            log.exception("cannot record the end of run %s", run.id)
