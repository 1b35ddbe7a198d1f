"""One unit of work as a worker runs it: materialize, call the function, import its output.

This module is plain Python (no Ray) so it runs the same inside a Ray task, inside a Ray Job
on a remote cluster, or directly in a test.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..cas import CID, BlockSource, MemoryBlockStore, _unixfs
from ..errors import CatsError, InvalidInputError, LimitError
from ._environment import BuiltEnvironment, build_environment, distributions_digest, environment_cache_dir
from ._materialize import ENTRYPOINT_RE, materialize, package_name, remove_tree
from ._sandbox import SandboxCall, SandboxSettings, make_task_dir, resolve_mode, run_call

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
        sandbox: How the task is confined (None: ``auto`` resolved on the worker, default limits).
        environment: CID of the Function's Environment record, or None (the runtime's interpreter
            and the standard library only).
        env_cache: Where the driver keeps built Environments (used when this worker sees that
            directory, else the worker's own private cache).
    """

    key: str
    code: str
    entrypoint: str
    inputs: dict[str, str]
    params: dict[str, Any]
    seed: int
    datum: DatumRef | None = None
    sandbox: SandboxSettings | None = None
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
        sandbox: The sandbox mode the function ran in (goes into the Invoice's executor facts).
        facts: What the task ran with (``interpreter``, ``distributions``) when it had an Environment.
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
    sandbox: str = ""
    facts: dict[str, str] = field(default_factory=dict)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _declared(source: BlockSource, cid: CID) -> int:
    info = _unixfs.stat(source, cid)
    # A file declares its size (UnixFS filesize); a directory the sum of its links' Tsize.
    return info.size if info.kind == "file" else info.cumulative_size


class _Budget:
    """Bytes a task may materialize: declared sizes are checked first, written bytes as they land."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.declared = 0
        self.written = 0

    def declare(self, what: str, size: int) -> None:
        self.declared += size
        if self.declared > self.limit:
            raise LimitError(
                f"expected at most {self.limit} bytes of code and inputs for a task, found {what} "
                f"declaring {size} bytes ({self.declared} in all)"
            )

    def wrote(self, n: int) -> None:
        # Whatever the DAG declared: a directory's Tsize can lie, or blocks can repeat.
        self.written += n
        if self.written > self.limit:
            raise LimitError(
                f"expected at most {self.limit} bytes of code and inputs for a task, "
                f"found more while writing them (the DAG understated its size)"
            )


def _layout(spec: TaskSpec, source: BlockSource, task_dir: Path, budget: _Budget) -> SandboxCall:
    """Materialize code, inputs and datum from verified blocks into the task directory."""
    code = CID.decode(spec.code)
    if not ENTRYPOINT_RE.match(spec.entrypoint):
        raise InvalidInputError(f"expected an entrypoint 'module:callable', found {spec.entrypoint!r}")
    wanted: list[tuple[str, CID, Path]] = [("the code", code, task_dir / "code")]
    (task_dir / "inputs").mkdir()
    inputs: dict[str, str] = {}
    for name, cid_text in sorted(spec.inputs.items()):
        wanted.append((f"input {name!r}", CID.decode(cid_text), task_dir / "inputs" / name))
        inputs[name] = name
    datum: tuple[str, str, str, str] | None = None
    if spec.datum is not None:
        d = spec.datum
        (task_dir / "inputs" / d.input).mkdir()
        wanted.append(
            (f"datum {d.input}/{d.name}", CID.decode(d.cid), task_dir / "inputs" / d.input / d.name)
        )
        inputs[d.input] = f"{d.input}/{d.name}"
        datum = (d.input, d.name, inputs[d.input], d.cid)
    for what, cid, _ in wanted:
        budget.declare(what, _declared(source, cid))
    for _, cid, target in wanted:
        materialize(source, cid, target, progress=budget.wrote)
    (task_dir / "output").mkdir()
    return SandboxCall(
        spec.key, task_dir, package_name(code), spec.entrypoint, inputs, datum, spec.params, spec.seed
    )


def _environment(spec: TaskSpec, source: BlockSource) -> BuiltEnvironment:
    assert spec.environment is not None
    hint = Path(spec.env_cache) if spec.env_cache else None
    if os.environ.get("CATS_ENV_CACHE") or hint is None or not hint.is_dir():
        cache = environment_cache_dir()  # this worker's own (its operator's CATS_ENV_CACHE wins)
    else:
        cache = hint
    return build_environment(source, CID.decode(spec.environment), cache)


def _environment_facts(built: BuiltEnvironment) -> dict[str, str]:
    # Computed here, over the directories the sandbox binds read-only and puts on the child's
    # sys.path (with -I -S nothing else with distribution metadata is importable): the user's code
    # can neither change these files nor what this process records about them.
    found = {
        (str(d.metadata["Name"]), d.version)
        for d in importlib.metadata.distributions(path=[str(p) for p in built.site_packages])
        if d.metadata["Name"]
    }
    base = os.path.realpath(built.python)
    return {
        "interpreter": f"{platform.python_implementation().lower()} {platform.python_version()} {base}",
        "distributions": distributions_digest(found),
    }


def _settings(spec: TaskSpec) -> SandboxSettings:
    if spec.sandbox is not None:
        return spec.sandbox
    mode, _ = resolve_mode("auto")
    return SandboxSettings(mode=mode)


def run_task(spec: TaskSpec, source: BlockSource, *, workdir: Path | None = None) -> TaskResult:
    """Run one task: code and inputs come from ``source`` (verified), never from the caller's disk.

    The user's function runs in a fresh sandboxed child (see :mod:`._sandbox`); this process only
    materializes, waits and hashes the output. Any failure (a bad DAG, a budget, the function
    raising, a limit) becomes a failed result with the reason; the task directory is always removed.
    """
    started = _now_ms()
    settings = _settings(spec)
    host = socket.gethostname()
    given = workdir if workdir is not None else Path(settings.workdir) if settings.workdir else None
    task_dir = make_task_dir(given)
    log = ""
    facts: dict[str, str] = {}
    try:
        try:
            if spec.environment is not None:
                # The Environment's interpreter and site-packages, bound read-only in the sandbox;
                # never the node's own packages.
                built = _environment(spec, source)
                facts = _environment_facts(built)
                settings = dataclasses.replace(
                    settings,
                    python=str(built.python),
                    python_path=tuple(str(p) for p in built.site_packages),
                )
            call = _layout(spec, source, task_dir, _Budget(settings.limits.input_bytes))
            result = run_call(call, settings)
            log = result.log
            if result.error is not None:
                return TaskResult(
                    spec.key,
                    "failed",
                    None,
                    [],
                    log,
                    result.error,
                    host,
                    started,
                    _now_ms(),
                    settings.mode,
                    facts,
                )
            store = MemoryBlockStore()
            root = _unixfs.add_path(task_dir / "output", store, hidden=True).cid  # every file written
            blocks = [(cid.buffer, store.get(cid)) for cid in store]
        except Exception as exc:
            log += traceback.format_exc() if not isinstance(exc, CatsError) else f"error: {exc}\n"
            error = f"{type(exc).__name__}: {exc}"
            return TaskResult(
                spec.key, "failed", None, [], log, error, host, started, _now_ms(), settings.mode, facts
            )
    finally:
        remove_tree(task_dir)
    return TaskResult(
        spec.key, "succeeded", root.buffer, blocks, log, None, host, started, _now_ms(), settings.mode, facts
    )
