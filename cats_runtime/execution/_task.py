"""One unit of work as a worker runs it: materialize, call the function, import its output.

This module is plain Python (no Ray) so it runs the same inside a Ray task, inside a Ray Job
on a remote cluster, or directly in a test.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..cas import CID, BlockSource, MemoryBlockStore, _unixfs
from ._context import Context, Datum
from ._materialize import load_entrypoint, materialize, materialize_code, remove_tree

__all__ = ["DatumRef", "TaskResult", "TaskSpec", "run_task"]


@dataclass(frozen=True)
class DatumRef:
    """A top-level entry of the mapped input (CIDs as text so specs stay plain data)."""

    input: str
    name: str
    cid: str


@dataclass(frozen=True)
class TaskSpec:
    """What one task must compute: plain values only, so any transport can carry it.

    Attributes:
        key: Stable identifier of the task in a run (``"batch"`` or ``"<input>/<name>"``).
        code: CID of the UnixFS code directory.
        entrypoint: ``module:callable`` inside the code directory.
        inputs: Input name -> CID; in map mode the mapped input is replaced by ``datum``.
        params: JSON parameters.
        seed: The Order's seed.
        datum: The entry of the mapped input this task processes, or None in batch mode.
    """

    key: str
    code: str
    entrypoint: str
    inputs: dict[str, str]
    params: dict[str, Any]
    seed: int
    datum: DatumRef | None = None


@dataclass
class TaskResult:
    """What a task sends back: its output as blocks (checked again by the receiver) and its log.

    Attributes:
        key: The spec's key.
        status: ``succeeded`` or ``failed``.
        output: Root CID (binary) of the output directory, None on failure.
        blocks: ``(cid bytes, data)`` for every block of the output; the driver re-verifies each.
        log: Captured stdout, stderr and log records (and the traceback on failure).
        error: One line ``ExceptionType: message`` on failure.
        host: Hostname of the worker (goes into the Invoice's executor facts).
        started_ms: Wall-clock start in ms since the epoch.
        finished_ms: Wall-clock end.
    """

    key: str
    status: Literal["succeeded", "failed"]
    output: bytes | None
    blocks: list[tuple[bytes, bytes]] = field(default_factory=list)
    log: str = ""
    error: str | None = None
    host: str = ""
    started_ms: int = 0
    finished_ms: int = 0


class _LogHandler(logging.Handler):
    def __init__(self, buffer: io.StringIO) -> None:
        super().__init__()
        self._buffer = buffer
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self._buffer.write(self.format(record) + "\n")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_task(spec: TaskSpec, source: BlockSource, *, workdir: Path | None = None) -> TaskResult:
    """Run one task: code and inputs come from ``source`` (verified), never from the caller's disk.

    Any exception raised while materializing or by the function itself becomes a failed result
    with the traceback in its log; the output of a failed task is discarded.
    """
    started = _now_ms()
    buffer = io.StringIO()
    tmp = Path(tempfile.mkdtemp(prefix="cats-task-", dir=workdir))
    logger = logging.Logger(f"cats.function.{spec.key}", logging.DEBUG)  # unregistered: freed with the task
    logger.addHandler(_LogHandler(buffer))
    logger.propagate = False
    try:
        try:
            code = CID.decode(spec.code)
            fn = load_entrypoint(materialize_code(source, code), spec.entrypoint, code)
            inputs: dict[str, Path] = {}
            (tmp / "inputs").mkdir()
            for name, cid_text in sorted(spec.inputs.items()):
                inputs[name] = materialize(source, CID.decode(cid_text), tmp / "inputs" / name)
            datum: Datum | None = None
            if spec.datum is not None:
                holder = tmp / "inputs" / spec.datum.input
                holder.mkdir()
                path = materialize(source, CID.decode(spec.datum.cid), holder / spec.datum.name)
                inputs[spec.datum.input] = path
                datum = Datum(spec.datum.input, spec.datum.name, path, spec.datum.cid)
            output = tmp / "output"
            output.mkdir()
            ctx = Context(
                inputs=inputs, output=output, params=spec.params, seed=spec.seed, log=logger, datum=datum
            )
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                fn(ctx)
            store = MemoryBlockStore()
            root = _unixfs.add_path(output, store, hidden=True).cid  # every file the task wrote
            blocks = [(cid.buffer, store.get(cid)) for cid in store]
        except (Exception, SystemExit) as exc:  # a function calling sys.exit() failed too
            buffer.write(traceback.format_exc())
            return TaskResult(
                spec.key,
                "failed",
                None,
                [],
                buffer.getvalue(),
                f"{type(exc).__name__}: {exc}",
                socket.gethostname(),
                started,
                _now_ms(),
            )
    finally:
        remove_tree(tmp)
    return TaskResult(
        spec.key,
        "succeeded",
        root.buffer,
        blocks,
        buffer.getvalue(),
        None,
        socket.gethostname(),
        started,
        _now_ms(),
    )
