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
from ._environment import build_environment, environment_cache_dir, run_in_environment
from ._materialize import _package_name, load_entrypoint, materialize, materialize_code, remove_tree

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
        environment: CID of the Function's Environment record, or None (run in this process).
        env_cache: Where the driver keeps built Environments (used when this worker sees that
            directory, else the worker's own cache).
    """

    key: str
    code: str
    entrypoint: str
    inputs: dict[str, str]
    params: dict[str, Any]
    seed: int
    datum: DatumRef | None = None
    environment: str | None = None
    env_cache: str | None = None


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
        facts: What the task observed about where it ran (``interpreter``, ``distributions``).
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
    facts: dict[str, str] = field(default_factory=dict)


class _FunctionFailed(Exception):
    """The function failed in its Environment's process (which already logged the traceback)."""


def _call_in_environment(
    spec: TaskSpec, source: BlockSource, code: CID, code_dir: Path, ctx: Context, tmp: Path
) -> tuple[str, dict[str, str]]:
    assert spec.environment is not None
    hint = Path(spec.env_cache) if spec.env_cache else None
    cache = hint if hint is not None and hint.is_dir() else environment_cache_dir()
    built = build_environment(source, CID.decode(spec.environment), cache)
    (tmp / "run").mkdir()
    datum = None
    if ctx.datum is not None:
        datum = {
            "input": ctx.datum.input,
            "name": ctx.datum.name,
            "path": str(ctx.datum.path),
            "cid": ctx.datum.cid,
        }
    outcome = run_in_environment(
        built,
        code_dir=code_dir,
        package=_package_name(code),
        entrypoint=spec.entrypoint,
        inputs=ctx.inputs,
        output=ctx.output,
        params=spec.params,
        seed=spec.seed,
        datum=datum,
        workdir=tmp / "run",
    )
    if not outcome.ok:
        raise _FunctionFailed(outcome.log, outcome.error, dict(outcome.facts))
    return outcome.log, dict(outcome.facts)


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
    facts: dict[str, str] = {}
    try:
        try:
            code = CID.decode(spec.code)
            code_dir = materialize_code(source, code)
            # With an Environment the function runs in that Environment's interpreter (a child
            # process that cannot import the node's packages); without one, in this process.
            fn = None if spec.environment is not None else load_entrypoint(code_dir, spec.entrypoint, code)
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
            if fn is None:
                child_log, facts = _call_in_environment(spec, source, code, code_dir, ctx, tmp)
                buffer.write(child_log)
            else:
                with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                    fn(ctx)
            store = MemoryBlockStore()
            root = _unixfs.add_path(output, store, hidden=True).cid  # every file the task wrote
            blocks = [(cid.buffer, store.get(cid)) for cid in store]
        except (Exception, SystemExit) as exc:  # a function calling sys.exit() failed too
            if isinstance(exc, _FunctionFailed):
                child_log, error, facts = exc.args
                buffer.write(child_log)
            else:
                buffer.write(traceback.format_exc())
                error = f"{type(exc).__name__}: {exc}"
            return TaskResult(
                spec.key,
                "failed",
                None,
                [],
                buffer.getvalue(),
                error,
                socket.gethostname(),
                started,
                _now_ms(),
                facts,
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
        facts,
    )
