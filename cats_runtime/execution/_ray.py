"""The executor: run tasks on Ray (embedded local Ray by default, or an existing cluster).

Retry policy: a task whose worker process dies (OOM kill, segfault, node loss) is retried by Ray
up to ``MAX_RETRIES`` times; an exception raised by the user's function is *not* retried
(``retry_exceptions=False``) because a deterministic function fails the same way again: it is
caught inside the task and comes back as a failed result with its traceback.

Tasks send their output back as blocks (bytes through Ray's object store) and the driver
re-verifies every block before storing it, so workers never need the caller's disk to write
and a faulty worker cannot smuggle in bytes that do not match their CIDs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from ..cas import CID, Block, BlockSource, BlockStore, MemoryBlockStore
from ..errors import ExecutionError, IntegrityError, InvalidInputError, PeerError
from ._task import TaskResult, TaskSpec, run_task

__all__ = [
    "MAX_RETRIES",
    "Executor",
    "RayExecutor",
    "SourceDesc",
    "TaskOutcome",
    "accept_result",
    "check_result",
    "collect_outcomes",
    "ensure_ray",
    "loopback_ray_env",
    "open_source",
    "ray_version",
    "run_locally",
]

MAX_RETRIES: Final = 2
"""Ray retries of a task whose worker died; user exceptions are never retried."""

_FLUSH_BLOCKS: Final = 1024
_FLUSH_BYTES: Final = 32 << 20
_FLUSH_SECONDS: Final = 2.0

_init_lock = threading.Lock()
_connected: dict[str, str] = {}


@dataclass(frozen=True)
class SourceDesc:
    """Where workers read blocks from.

    Attributes:
        kind: ``fs`` — a blockstore directory on a disk the workers share (embedded Ray);
            ``gateway`` — an IPFS trustless gateway URL the cluster can reach;
            ``kubo`` — a Kubo RPC URL; ``inline`` — blocks shipped with each task (Ray Client
            without a reachable CAS).
        location: Path or URL (empty for ``inline``).
    """

    kind: Literal["fs", "gateway", "kubo", "inline"]
    location: str = ""


class _Layered:
    """Blocks shipped with the task first, then the configured source."""

    def __init__(self, first: MemoryBlockStore, rest: BlockSource | None) -> None:
        self._first = first
        self._rest = rest

    def get(self, cid: CID) -> bytes:
        if self._first.has(cid) or self._rest is None:
            return self._first.get(cid)
        return self._rest.get(cid)

    def has(self, cid: CID) -> bool:
        return self._first.has(cid) or (self._rest is not None and self._rest.has(cid))


def open_source(desc: SourceDesc, blocks: Iterable[tuple[bytes, bytes]] = ()) -> BlockSource:
    """Open the block source a worker reads from; shipped ``blocks`` are verified first."""
    rest: BlockSource | None
    if desc.kind == "fs":
        from ..cas import PackedBlockStore

        rest = PackedBlockStore(Path(desc.location))
    elif desc.kind == "gateway":
        from ..cas._gateway import GatewayBlockSource

        rest = GatewayBlockSource(desc.location)
    elif desc.kind == "kubo":
        from ..cas._kubo import KuboBlockStore, KuboClient

        rest = KuboBlockStore(KuboClient(desc.location))
    elif desc.kind == "inline":
        rest = None
    else:
        raise InvalidInputError(f"expected a source kind fs|gateway|kubo|inline, found {desc.kind!r}")
    shipped = MemoryBlockStore()
    for cid_bytes, data in blocks:
        shipped.put(Block.checked(CID.from_bytes(cid_bytes), data, source="task arguments"))
    if rest is None or len(shipped):
        return _Layered(shipped, rest)
    return rest


def _ray_task(
    spec: TaskSpec,
    source: SourceDesc,
    code_blocks: list[tuple[bytes, bytes]],
    data_blocks: list[tuple[bytes, bytes]],
) -> TaskResult:
    return run_task(spec, open_source(source, [*code_blocks, *data_blocks]))


def ray_version() -> str:
    """The installed Ray version, read from the package metadata.

    Importing Ray costs about a second; a run on the warm local Ray never imports it, so the
    Invoice's executor facts must not either.
    """
    import importlib.metadata

    try:
        return importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        import ray  # an unusual install without metadata: ask the module itself

        return str(ray.__version__)


LOOPBACK: Final = "127.0.0.1"


def loopback_ray_env(token_path: Path | None = None, temp_dir: Path | None = None) -> dict[str, str]:
    """Environment that keeps an embedded Ray on loopback and behind token authentication.

    Ray replaces a ``127.0.0.1`` node address by the interface address unless
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; ``RAY_AUTH_MODE=token`` makes every Ray port demand
    the token (read from ``token_path`` when given, else Ray's default ``~/.ray/auth_token``);
    ``RAY_TMPDIR`` keeps Ray's files out of ``/tmp/ray``. Usage statistics are off: nothing of a
    run is sent anywhere.
    """
    env = {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if token_path is not None:
        env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    if temp_dir is not None:
        env["RAY_TMPDIR"] = str(temp_dir)
    return env


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def ensure_ray(address: str | None = None, *, temp_dir: Path | None = None) -> str:
    """Connect to Ray once per process and return a description of the cluster.

    ``None`` starts (or reuses) an embedded local Ray sized to this machine's CPUs, without the
    dashboard, every port bound to 127.0.0.1 with Ray's token authentication on (see
    :func:`loopback_ray_env`; Ray picks free ports itself for everything but the metrics port,
    which is given a free one), and with worker output kept out of the driver's terminal (it goes
    to the Invoice log instead). ``temp_dir`` holds Ray's session files. A ``ray://`` address
    connects with Ray Client. An already initialized Ray (a test session, a Ray Job's driver) is
    reused as it is.
    """
    if address is not None and not (address.startswith("ray://") or address == "auto"):
        raise InvalidInputError(f"expected a ray:// address (or none for local Ray), found {address!r}")
    with _init_lock:
        key = address or "local"
        if address is None:
            # Before ``import ray``: Ray reads part of this when it loads.
            for name, value in loopback_ray_env(temp_dir=temp_dir).items():
                os.environ.setdefault(name, value)
        import ray

        if ray.is_initialized():
            if key in _connected:
                return _connected[key]
            if address is None:
                return "existing"  # started by the host program (a test session, a notebook)
            raise InvalidInputError(
                f"Ray is already connected to another cluster in this process; cannot also use {address}"
            )
        if address is None:
            ray.init(
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                _node_ip_address=LOOPBACK,
                _metrics_export_port=_free_loopback_port(),
                _temp_dir=None if temp_dir is None else str(temp_dir),
            )
            _connected[key] = "local"
        else:
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            except Exception as exc:
                raise PeerError(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
            _connected[key] = address
        return _connected[key]


class Executor(Protocol):
    """Something that runs task specs and stores their verified outputs in ``sink``."""

    cluster: str

    def run(
        self,
        tasks: Sequence[TaskSpec],
        sink: BlockStore,
        *,
        on_done: Callable[[TaskOutcome], None] | None = None,
    ) -> list[TaskOutcome]:
        """Run every task; outcomes in task order."""
        ...


@dataclass(frozen=True)
class TaskOutcome:
    """A finished task as the driver sees it: output blocks already verified and stored."""

    key: str
    status: Literal["succeeded", "failed"]
    output: CID | None
    log: str
    error: str | None
    host: str
    started_ms: int
    finished_ms: int
    facts: Mapping[str, str] = field(default_factory=dict)


def check_result(result: TaskResult) -> tuple[TaskOutcome, list[Block]]:
    """Verify a task's blocks against their CIDs and check the output root is among them."""
    output: CID | None = None
    blocks: list[Block] = []
    if result.status == "succeeded":
        if result.output is None:
            raise ExecutionError(f"task {result.key} succeeded without an output root")
        output = CID.from_bytes(result.output)
        blocks = [Block.checked(CID.from_bytes(c), d, source=f"task {result.key}") for c, d in result.blocks]
        if output not in {b.cid for b in blocks}:
            raise IntegrityError(f"task {result.key} returned output {output} without its root block")
    outcome = TaskOutcome(
        result.key,
        result.status,
        output,
        result.log,
        result.error,
        result.host,
        result.started_ms,
        result.finished_ms,
        dict(result.facts),
    )
    return outcome, blocks


def accept_result(result: TaskResult, sink: BlockStore) -> TaskOutcome:
    """Verify a task's blocks and store them (see :func:`check_result`)."""
    outcome, blocks = check_result(result)
    if blocks:
        sink.put_many(blocks)
    return outcome


def collect_outcomes(
    results: Iterable[TaskResult],
    tasks: Sequence[TaskSpec],
    sink: BlockStore,
    on_done: Callable[[TaskOutcome], None] | None = None,
) -> list[TaskOutcome]:
    """Verify and store task results as they arrive (any order); outcomes come back in task order."""
    index = {spec.key: i for i, spec in enumerate(tasks)}
    outcomes: list[TaskOutcome | None] = [None] * len(tasks)
    # Verified blocks are stored in batches: a durable put costs a filesystem sync, and one
    # sync per small datum would serialize a map run on the driver. Blocks not yet stored
    # when the run is interrupted are referenced by nothing, so batching is safe.
    buffer: list[Block] = []
    buffered = 0
    flushed = time.monotonic()
    remaining = len(tasks)
    for result in results:
        if result.key not in index:
            raise ExecutionError(f"expected results of this run's tasks, found one for {result.key!r}")
        outcome, blocks = check_result(result)
        buffer.extend(blocks)
        buffered += sum(len(b.data) for b in blocks)
        if outcomes[index[result.key]] is None:
            remaining -= 1
        outcomes[index[result.key]] = outcome
        if on_done is not None:
            on_done(outcome)
        full = len(buffer) >= _FLUSH_BLOCKS or buffered >= _FLUSH_BYTES
        if buffer and (full or not remaining or time.monotonic() - flushed >= _FLUSH_SECONDS):
            sink.put_many(buffer)
            buffer, buffered, flushed = [], 0, time.monotonic()
    if buffer:
        sink.put_many(buffer)
    missing = [tasks[i].key for i, o in enumerate(outcomes) if o is None]
    if missing:
        raise ExecutionError(f"expected a result for every task, found none for {missing[:3]}")
    return [o for o in outcomes if o is not None]


class RayExecutor:
    """Runs :class:`TaskSpec` s as Ray tasks and collects verified outputs.

    Args:
        address: ``None`` for local Ray, or a ``ray://`` address.
        source: Where workers read code and input blocks.
        ship: Blocks source used to gather the blocks each task needs when ``source`` is
            ``inline`` (the driver's store).
        home: The CATs home of the run. With ``address=None`` and no Ray already running in this
            process, the tasks go to that home's warm local Ray
            (:mod:`~cats_runtime.execution._local_ray`), started on first use; without a home
            an embedded Ray is started in this process.
    """

    def __init__(
        self,
        source: SourceDesc,
        *,
        address: str | None = None,
        ship: BlockSource | None = None,
        home: Path | None = None,
    ) -> None:
        if source.kind == "inline" and ship is None:
            raise InvalidInputError("an inline source needs a store to ship blocks from")
        self.source = source
        self.address = address
        self.ship = ship
        self.home = home
        self.cluster = ""

    def run(
        self,
        tasks: Sequence[TaskSpec],
        sink: BlockStore,
        *,
        on_done: Callable[[TaskOutcome], None] | None = None,
    ) -> list[TaskOutcome]:
        """Run every task (in parallel, as the cluster allows); outcomes come back in task order.

        A task whose worker died more than ``MAX_RETRIES`` times becomes a failed outcome; the
        caller decides what a failure means for the run. Ctrl-C cancels the tasks still running.
        """
        if self.address is None and self.home is not None and not _ray_in_this_process():
            from ._local_ray import LocalRayExecutor

            warm = LocalRayExecutor(self.home, self.source)
            outcomes = warm.run(tasks, sink, on_done=on_done)
            self.cluster = warm.cluster
            return outcomes
        return collect_outcomes(self.results(tasks), tasks, sink, on_done)

    def results(self, tasks: Sequence[TaskSpec]) -> Generator[TaskResult, None, None]:
        """Submit every task to the Ray this process is connected to; yield results as they finish.

        Closing the iterator early (the consumer failed, Ctrl-C, a client hung up) cancels the
        tasks still running.
        """
        import ray

        self.cluster = ensure_ray(self.address)
        remote = _remote()
        code_ref: Any = []
        if self.source.kind == "inline" and tasks:
            assert self.ship is not None
            shipped = _collect(self.ship, CID.decode(tasks[0].code))
            if tasks[0].environment is not None:  # the Environment record and its wheels
                shipped += _collect(self.ship, CID.decode(tasks[0].environment))
            code_ref = ray.put(shipped)
        refs = []
        for spec in tasks:
            data: list[tuple[bytes, bytes]] = []
            if self.source.kind == "inline":
                assert self.ship is not None
                for cid_text in [*spec.inputs.values(), *([spec.datum.cid] if spec.datum else [])]:
                    data.extend(_collect(self.ship, CID.decode(cid_text)))
            refs.append(remote.remote(spec, self.source, code_ref, data))
        keys = {ref: spec.key for ref, spec in zip(refs, tasks, strict=True)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                if pending:
                    more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                    done += more
                for ref in done:
                    yield self._fetch(ray, ref, keys[ref])
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    @staticmethod
    def _fetch(ray: Any, ref: Any, key: str) -> TaskResult:
        try:
            result: TaskResult = ray.get(ref)
        except ray.exceptions.RayError as exc:
            # The worker died on every attempt (or the cluster lost the task).
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return TaskResult(
                key,
                "failed",
                None,
                [],
                f"Ray could not complete the task after {MAX_RETRIES} retries:\n{exc}\n",
                f"{type(exc).__name__}: {first}",
            )
        return result


def _ray_in_this_process() -> bool:
    """True when this process already holds a Ray connection (a test session, a Ray Job driver)."""
    import sys

    ray = sys.modules.get("ray")  # never import Ray just to ask: that alone costs a second
    return ray is not None and bool(ray.is_initialized())


def _collect(store: BlockSource, root: CID) -> list[tuple[bytes, bytes]]:
    from ..cas._walk import walk

    return [(b.cid.buffer, b.data) for b in walk(store, root)]


_remote_fn: Any = None


def _remote() -> Any:
    global _remote_fn
    if _remote_fn is None:
        import ray

        _remote_fn = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False, num_cpus=1)(_ray_task)
    return _remote_fn


def run_locally(tasks: Sequence[TaskSpec], source: BlockSource, sink: BlockStore) -> list[TaskOutcome]:
    """Run tasks in this process, one after the other (the Ray Job driver's fallback, and tests)."""
    return [accept_result(run_task(spec, source), sink) for spec in tasks]
