"""The Invoice records what ran in an Environment, and `verify` reports drift from the record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cats_runtime.cas import _unixfs
from cats_runtime.operations import Node, build_function, run, verify

MakeFunction = Callable[..., str]
pytestmark = pytest.mark.usefixtures("ray_session")

IMPORTS = """
import importlib.metadata

def main(ctx):
    names = sorted(d.metadata["Name"] for d in importlib.metadata.distributions())
    (ctx.output / "names.txt").write_text(" ".join(names))
"""


def test_invoice_facts_and_drift_reported_by_verify(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("")  # no distributions: the standard library alone, isolated from the node's
    _, function = build_function(make_function(IMPORTS), node.store, requirements=reqs)
    doc = _unixfs.add_bytes(b"x", node.store)
    outcome = run(node, function=function, inputs={"doc": doc})
    assert outcome.status == "succeeded", outcome.error
    invoice = node.load(outcome.invoice)
    env_cid = node.load(function).environment
    facts = invoice.executor
    assert facts["environment"] == str(env_cid)
    assert facts["distributions"] == facts["distributions_declared"]
    assert facts["interpreter"].startswith("cpython 3.")
    names = b"".join(_unixfs.cat(node.store, _unixfs.links(node.store, outcome.output)[0][1].cid))
    assert names == b""  # not even cats-runtime's own dependencies were importable

    # Someone slips a distribution into the built Environment on this node. The tree no longer
    # hashes to the digest its marker recorded: at its next first use the entry is rebuilt, and
    # the re-execution never sees the stray.
    from cats_runtime.execution import _environment

    venv = node.home / "envs" / str(env_cid)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    stray = site / "stray-1.0.dist-info"

    def slip_in() -> None:
        stray.mkdir()
        (stray / "METADATA").write_text("Metadata-Version: 2.1\nName: stray\nVersion: 1.0\n")

    slip_in()
    _environment._VERIFIED.clear()  # a process that has not used this entry yet
    assert verify(node, outcome.bom).verdict == "match"
    assert not stray.exists()

    # Someone who also rewrites the marker's digest (the node's own uid could): the tree is
    # accepted, the tasks see the stray, the Invoice shows it, and verify says so even though
    # the output may match.
    slip_in()
    marker = json.loads((venv / _environment.MARKER).read_text())
    marker["tree"] = _environment.tree_digest(venv)
    (venv / _environment.MARKER).write_text(json.dumps(marker, sort_keys=True))
    checked = verify(node, outcome.bom)
    assert checked.verdict == "mismatch"  # the function lists what it can import: now 'stray'
    drift = [d for d in checked.differences if d.startswith("environment")]
    assert drift and "the record declares" in drift[0], checked.differences
    again = node.load(checked.invoice).executor
    assert again["distributions"] != again["distributions_declared"]
