"""Entry point of a CATs Ray Job: ``python -m cats_runtime.execution.job cats-payload.json``.

Runs on the cluster (started by :class:`~cats_runtime.execution.JobsExecutor`): reads the task
specs, schedules them on the cluster with Ray, and prints one ``CATS-TASK`` line per result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..cas import MemoryBlockStore
from ..cas._walk import walk
from ._jobs import encode_result_line, source_from_payload, spec_from_json
from ._ray import RayExecutor, ensure_ray
from ._task import TaskResult

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the payload's tasks on the cluster this job runs in."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0])
    payload = json.loads(path.read_text(encoding="utf-8"))
    tasks = [spec_from_json(t) for t in payload["tasks"]]
    source, shipped = source_from_payload(payload, path.parent)
    ensure_ray("auto")
    sink = MemoryBlockStore()
    outcomes = RayExecutor(source, address="auto", ship=shipped).run(tasks, sink)
    for o in outcomes:
        blocks = [(b.cid.buffer, b.data) for b in walk(sink, o.output)] if o.output is not None else []
        result = TaskResult(
            o.key,
            o.status,
            None if o.output is None else o.output.buffer,
            blocks,
            o.log,
            o.error,
            o.host,
            o.started_ms,
            o.finished_ms,
        )
        print(encode_result_line(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
