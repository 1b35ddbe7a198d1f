from __future__ import annotations

from pathlib import Path

import pytest

from cats_runtime.cas import MemoryBlockStore, _unixfs
from cats_runtime.errors import InvalidInputError
from cats_runtime.execution import MAX_RETRIES, RayExecutor, SandboxSettings, SourceDesc, TaskSpec, ensure_ray

pytestmark = pytest.mark.usefixtures("ray_session")

CRASHY = """
import os
import signal

def main(ctx):
    marker = ctx.params["marker"]
    if ctx.params["always"] or not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getppid(), signal.SIGKILL)  # the Ray worker dies, as on an OOM kill
    (ctx.output / "ok.txt").write_text("survived")
"""
# User code runs in a child of the worker; only the unconfined mode lets it reach the marker on
# the host and kill its parent (the worker), which is what these tests need to simulate.
UNCONFINED = SandboxSettings(mode="none")


def _setup(tmp_path: Path) -> tuple[MemoryBlockStore, str, str]:
    store = MemoryBlockStore()
    code = tmp_path / "code"
    code.mkdir()
    (code / "fn.py").write_text(CRASHY)
    doc = tmp_path / "doc.txt"
    doc.write_text("x")
    return store, str(_unixfs.add_path(code, store).cid), str(_unixfs.add_path(doc, store).cid)


def test_inline_source_ships_blocks_to_workers(tmp_path: Path) -> None:
    store, code, doc = _setup(tmp_path)
    marker = tmp_path / "marker"
    marker.touch()
    executor = RayExecutor(SourceDesc("inline"), ship=store)
    sink = MemoryBlockStore()
    [outcome] = executor.run(
        [
            TaskSpec(
                "batch",
                code,
                "fn:main",
                {"doc": doc},
                {"marker": str(marker), "always": False},
                0,
                None,
                UNCONFINED,
            )
        ],
        sink,
    )
    assert outcome.status == "succeeded" and outcome.output is not None and sink.has(outcome.output)


def test_worker_death_is_retried(tmp_path: Path) -> None:
    store, code, doc = _setup(tmp_path)
    marker = tmp_path / "marker"
    executor = RayExecutor(SourceDesc("inline"), ship=store)
    sink = MemoryBlockStore()
    spec = TaskSpec(
        "batch", code, "fn:main", {"doc": doc}, {"marker": str(marker), "always": False}, 0, None, UNCONFINED
    )
    [outcome] = executor.run([spec], sink)
    assert marker.exists()  # the first attempt did die
    assert outcome.status == "succeeded", outcome.log


@pytest.mark.slow
def test_worker_that_always_dies_fails_the_task(tmp_path: Path) -> None:
    store, code, doc = _setup(tmp_path)
    executor = RayExecutor(SourceDesc("inline"), ship=store)
    spec = TaskSpec(
        "batch",
        code,
        "fn:main",
        {"doc": doc},
        {"marker": str(tmp_path / "m"), "always": True},
        0,
        None,
        UNCONFINED,
    )
    [outcome] = executor.run([spec], MemoryBlockStore())
    assert outcome.status == "failed" and outcome.output is None
    assert outcome.error is not None and "WorkerCrashedError" in outcome.error
    assert f"after {MAX_RETRIES} retries" in outcome.log


def test_bad_address_and_source() -> None:
    with pytest.raises(InvalidInputError, match="ray://"):
        ensure_ray("tcp://nowhere:1")
    with pytest.raises(InvalidInputError, match="inline source needs a store"):
        RayExecutor(SourceDesc("inline"))
