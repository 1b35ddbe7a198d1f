"""Run tasks on a remote Ray cluster through the Ray Jobs API (e.g. a KubeRay head on :8265).

The caller never shares a disk with the cluster. The job's working directory (uploaded by Ray)
holds a JSON payload of task specs and, unless workers read from a CAS the cluster can reach
(``cas_url``: an IPFS gateway), a CAR with every code and input block. The job's driver
(:mod:`cats_runtime.execution.job`, run with the cluster's Python) schedules the tasks with
:class:`~cats_runtime.execution.RayExecutor` and prints each result as one ``CATS-TASK`` line
of base64 JSON in the job log; the caller reads the log, re-verifies every block against its
CID and stores it. Output travels through the job log, so this path suits outputs of up to
tens of MiB; larger ones belong on a shared Kubo node.

On a Plant (``cats redeploy``) the blocks are pushed instead to the Plant's own Kubo through a
port-forward (:class:`KuboPush`: a CAR ``dag import``-ed, each block then checked there) and the
job's workers read them from that Kubo's in-cluster RPC address, which the payload names.

Authentication: Ray's token auth. The token comes from ``RAY_AUTH_TOKEN`` or a token file
(``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``) and is sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from ..cas import CID, Block, BlockSource, BlockStore
from ..cas._car import write_car
from ..cas._kubo import DagImportResult, KuboClient
from ..cas._walk import walk
from ..errors import AuthError, ExecutionError, InvalidInputError, PeerError
from ._ray import SourceDesc, TaskOutcome, accept_result
from ._sandbox import SandboxSettings
from ._task import DatumRef, TaskResult, TaskSpec

__all__ = [
    "RESULT_PREFIX",
    "JobsExecutor",
    "KuboPush",
    "auth_token",
    "decode_result_line",
    "encode_result_line",
    "push_blocks",
]

RESULT_PREFIX: Final = "CATS-TASK "
PAYLOAD_FILE: Final = "cats-payload.json"
BLOCKS_FILE: Final = "cats-blocks.car"


def auth_token() -> str | None:
    """The Ray auth token from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    if token:
        return token.strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def encode_result_line(result: TaskResult) -> str:
    """One log line carrying a task result (blocks base64-encoded)."""
    value = asdict(result)
    value["output"] = None if result.output is None else base64.b64encode(result.output).decode()
    value["blocks"] = [[base64.b64encode(c).decode(), base64.b64encode(d).decode()] for c, d in result.blocks]
    return RESULT_PREFIX + base64.b64encode(json.dumps(value).encode()).decode()


def decode_result_line(line: str) -> TaskResult:
    """The task result of a ``CATS-TASK`` line (blocks still to be verified by the caller)."""
    try:
        value = json.loads(base64.b64decode(line[len(RESULT_PREFIX) :], validate=True))
        blocks = [(base64.b64decode(c), base64.b64decode(d)) for c, d in value.pop("blocks")]
        output = value.pop("output")
        return TaskResult(output=None if output is None else base64.b64decode(output), blocks=blocks, **value)
    except (ValueError, TypeError, KeyError) as exc:
        raise PeerError(f"expected a CATs task result in the job log, found a malformed line: {exc}") from exc


def spec_to_json(spec: TaskSpec) -> dict[str, Any]:
    """A task spec as plain JSON."""
    return asdict(spec)


def spec_from_json(value: dict[str, Any]) -> TaskSpec:
    """The inverse of :func:`spec_to_json`."""
    datum = value.get("datum")
    sandbox = value.get("sandbox")
    return TaskSpec(
        **{
            **value,
            "datum": DatumRef(**datum) if datum else None,
            "sandbox": SandboxSettings.from_json(sandbox) if sandbox else None,
        }
    )


@dataclass(frozen=True)
class KuboPush:
    """Blocks go to a Kubo before the job; the job's workers read them from that Kubo.

    Attributes:
        push_url: The Kubo RPC API this process reaches (a loopback port-forward).
        cluster_url: The same Kubo's RPC API as the cluster's pods reach it (in-cluster name).
    """

    push_url: str
    cluster_url: str


def push_blocks(source: BlockSource, roots: Sequence[CID], client: KuboClient) -> DagImportResult:
    """Import the closure of ``roots`` into a Kubo as one CAR and check it arrived whole.

    Each root is pinned (recursively: Kubo refuses the pin when a block under it is missing),
    and every block is then asked for by CID and its size compared with the one sent.

    Raises:
        PeerError: Kubo did not import a root, could not pin it, or holds a block of another size.
    """
    blocks = _blocks(source, sorted(set(roots)))
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as f:
        write_car(f, sorted(set(roots)), blocks)
        f.seek(0)
        result = client.dag_import(f, pin_roots=True)
    missing = sorted(set(roots) - set(result.roots))
    if missing or result.pin_errors:
        raise PeerError(
            f"expected Kubo at {client.base_url} to import and pin {len(set(roots))} roots, found "
            f"{len(missing)} not imported and pin errors {dict(result.pin_errors) or 'none'}"
        )
    for block in blocks:
        _, size = client.block_stat(block.cid)
        if size != len(block.data):
            raise PeerError(
                f"expected block {block.cid} of {len(block.data)} bytes on Kubo at {client.base_url}, "
                f"found {size} bytes"
            )
    return result


def task_roots(tasks: Sequence[TaskSpec]) -> list[CID]:
    """Every root a job's tasks read: the code, the Environment (with its wheels), inputs, datums."""
    roots = {CID.decode(tasks[0].code)}
    if tasks[0].environment is not None:
        roots.add(CID.decode(tasks[0].environment))
    for t in tasks:
        roots.update(CID.decode(c) for c in t.inputs.values())
        if t.datum is not None:
            roots.add(CID.decode(t.datum.cid))
    return sorted(roots)


class JobsExecutor:
    """Runs task specs as one Ray Job on a cluster reached over HTTP(S).

    Args:
        address: The Ray dashboard / Jobs API URL, e.g. ``http://raycluster-head-svc:8265``.
        ship: The caller's store, where code and input blocks come from.
        cas_url: An IPFS gateway the cluster's workers can reach; when None, the blocks travel
            with the job.
        kubo: Push the blocks to this Kubo before submitting; workers read them from it
            (takes precedence over ``cas_url``).
        python: The interpreter of the job's entrypoint on the cluster (``CATS_RAY_JOB_PYTHON``,
            default ``python``).
        timeout: Seconds to wait for the job.
    """

    def __init__(
        self,
        address: str,
        ship: BlockSource,
        *,
        cas_url: str | None = None,
        kubo: KuboPush | None = None,
        python: str | None = None,
        timeout: float = 3600.0,
    ) -> None:
        if not address.startswith(("http://", "https://")):
            raise InvalidInputError(f"expected an http(s) Ray Jobs API address, found {address!r}")
        self.address = address
        self.ship = ship
        self.cas_url = cas_url
        self.kubo = kubo
        self.python = python or os.environ.get("CATS_RAY_JOB_PYTHON", "python")
        self.timeout = timeout
        self.cluster = address
        self.job_id: str | None = None

    def _client(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        token = auth_token()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            return JobSubmissionClient(self.address, headers=headers)
        except Exception as exc:
            text = str(exc)
            if "401" in text or "403" in text or "authentication" in text.lower():
                raise AuthError(f"the Ray Jobs API at {self.address} refused the token: {text}") from exc
            raise PeerError(f"cannot reach the Ray Jobs API at {self.address}: {text}") from exc

    def run(
        self,
        tasks: Sequence[TaskSpec],
        sink: BlockStore,
        *,
        on_done: Callable[[TaskOutcome], None] | None = None,
    ) -> list[TaskOutcome]:
        """Submit one job running every task; outcomes come back in task order."""
        if not tasks:
            return []
        client = self._client()
        with tempfile.TemporaryDirectory(prefix="cats-job-") as tmp:
            work = Path(tmp)
            payload: dict[str, Any] = {"tasks": [spec_to_json(t) for t in tasks]}
            if self.kubo is not None:
                with KuboClient(self.kubo.push_url) as kubo:
                    push_blocks(self.ship, task_roots(tasks), kubo)
                payload["source"] = {"kind": "kubo", "location": self.kubo.cluster_url}
            elif self.cas_url:
                payload["source"] = {"kind": "gateway", "location": self.cas_url}
            else:
                payload["source"] = {"kind": "car", "location": BLOCKS_FILE}
                roots = task_roots(tasks)
                with (work / BLOCKS_FILE).open("wb") as f:
                    write_car(f, roots, _blocks(self.ship, roots))
            (work / PAYLOAD_FILE).write_text(json.dumps(payload), encoding="utf-8")
            self.job_id = self._submit(client, work)
        try:
            status = self._wait(client)
        except BaseException:
            # Ctrl-C or a timeout: do not leave the job running on the cluster.
            client.stop_job(self.job_id)
            raise
        logs = str(client.get_job_logs(self.job_id))
        results = {
            r.key: r
            for r in (decode_result_line(x) for x in logs.splitlines() if x.startswith(RESULT_PREFIX))
        }
        if len(results) != len(tasks):
            tail = "\n".join(logs.splitlines()[-20:])
            raise ExecutionError(
                f"Ray job {self.job_id} ended {status} with {len(results)} of {len(tasks)} results:\n{tail}"
            )
        outcomes = []
        for spec in tasks:
            outcome = accept_result(results[spec.key], sink)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
        return outcomes

    def _submit(self, client: Any, work: Path) -> str:
        # A head that just started answers before its job agent is up ("No available agent"):
        # that one error is retried for a while, every other refusal is final.
        deadline = time.monotonic() + 120
        while True:
            try:
                return str(
                    client.submit_job(
                        entrypoint=f"{self.python} -m cats_runtime.execution.job {PAYLOAD_FILE}",
                        runtime_env={"working_dir": str(work)},
                    )
                )
            except Exception as exc:
                if "No available agent" in str(exc) and time.monotonic() < deadline:
                    time.sleep(2)
                    continue
                raise PeerError(f"the Ray Jobs API at {self.address} refused the job: {exc}") from exc

    def _wait(self, client: Any) -> str:
        deadline = time.monotonic() + self.timeout
        delay = 0.2
        while True:
            status = str(client.get_job_status(self.job_id))
            if status.rsplit(".", 1)[-1] in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            if time.monotonic() > deadline:
                raise ExecutionError(f"Ray job {self.job_id} did not finish within {self.timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)


def _blocks(source: BlockSource, roots: list[CID]) -> list[Block]:
    seen: set[CID] = set()
    out: list[Block] = []
    for root in roots:
        for block in walk(source, root):
            if block.cid not in seen:
                seen.add(block.cid)
                out.append(block)
    return out


def source_from_payload(payload: dict[str, Any], workdir: Path) -> tuple[SourceDesc, BlockSource | None]:
    """Where the job's workers read blocks: a gateway, a Kubo, or the CAR shipped with the job."""
    source = payload["source"]
    if source["kind"] in ("gateway", "kubo"):
        return SourceDesc(source["kind"], source["location"]), None
    from ..cas import MemoryBlockStore
    from ..cas._car import read_car

    store = MemoryBlockStore()
    with (workdir / source["location"]).open("rb") as f:
        store.put_many(read_car(f))
    return SourceDesc("inline"), store
