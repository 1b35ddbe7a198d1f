"""An Environment for another interpreter fails the run in one line, before any task starts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from cats_runtime.cas import _unixfs
from cats_runtime.errors import ExecutionError
from cats_runtime.operations import Node, build_function, run

MakeFunction = Callable[..., str]


def test_mismatched_environment_fails_before_any_task(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("")
    record, _ = build_function(
        make_function(f"def main(ctx):\n    open({str(marker)!r}, 'w').close()\n"),
        node.store,
        requirements=reqs,
    )
    assert record.environment is not None
    env = node.load(record.environment)
    other = dataclasses.replace(env, python="3.99", platform="linux-riscv64")
    node.store.put(other.to_block())
    function = dataclasses.replace(record, environment=other.cid)
    node.store.put(function.to_block())
    doc = _unixfs.add_bytes(b"x", node.store)
    with pytest.raises(
        ExecutionError,
        match=rf"^environment {other.cid} needs CPython 3\.99 on linux-riscv64; this node runs CPython 3\.",
    ):
        run(node, function=function.cid, inputs={"doc": doc})
    assert not marker.exists()
    assert not (node.home / "envs" / str(other.cid)).exists()
    assert len(node.repo.pins) == 0  # no Invoice, no BOM: nothing ran
