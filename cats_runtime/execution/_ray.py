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
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    "ensure_ray",
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
        from ..cas import FSBlockStore

        rest = FSBlockStore(Path(desc.location))
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
    """The installed Ray version (imported lazily: ``cats --help`` must not pay for Ray)."""
    import ray

    return str(ray.__version__)


def ensure_ray(address: str | None = None) -> str:
    """Connect to Ray once per process and return a description of the cluster.

    ``None`` starts (or reuses) an embedded local Ray sized to this machine's CPUs, without the
    dashboard, and with worker output kept out of the driver's terminal (it goes to the Invoice
    log instead). A ``ray://`` address connects with Ray Client. An already initialized Ray
    (a test session, a Ray Job's driver) is reused as it is.
    """
    import ray

    if address is not None and not (address.startswith("ray://") or address == "auto"):
        raise InvalidInputError(f"expected a ray:// address (or none for local Ray), found {address!r}")
    with _init_lock:
        key = address or "local"
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


class RayExecutor:
    """Runs :class:`TaskSpec` s as Ray tasks and collects verified outputs.

    Args:
        address: ``None`` for embedded local Ray, or a ``ray://`` address.
        source: Where workers read code and input blocks.
        ship: Blocks source used to gather the blocks each task needs when ``source`` is
            ``inline`` (the driver's store).
    """

    def __init__(
        self, source: SourceDesc, *, address: str | None = None, ship: BlockSource | None = None
    ) -> None:
        if source.kind == "inline" and ship is None:
            raise InvalidInputError("an inline source needs a store to ship blocks from")
        self.source = source
        self.address = address
        self.ship = ship
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
        index = {ref: i for i, ref in enumerate(refs)}
        outcomes: list[TaskOutcome | None] = [None] * len(refs)
        pending = list(refs)
        # Verified blocks are stored in batches: a durable put costs a filesystem sync, and one
        # sync per small datum would serialize a map run on the driver. Blocks not yet stored
        # when the run is interrupted are referenced by nothing, so batching is safe.
        buffer: list[Block] = []
        buffered = 0
        flushed = time.monotonic()
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                if pending:
                    more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                    done += more
                for ref in done:
                    outcome, blocks = check_result(self._fetch(ray, ref, tasks[index[ref]].key))
                    buffer.extend(blocks)
                    buffered += sum(len(b.data) for b in blocks)
                    outcomes[index[ref]] = outcome
                    if on_done is not None:
                        on_done(outcome)
                full = len(buffer) >= _FLUSH_BLOCKS or buffered >= _FLUSH_BYTES
                if buffer and (full or not pending or time.monotonic() - flushed >= _FLUSH_SECONDS):
                    sink.put_many(buffer)
                    buffer, buffered, flushed = [], 0, time.monotonic()
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return [o for o in outcomes if o is not None]

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
