from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cats_runtime.cas import CID, _unixfs
from cats_runtime.errors import InvalidInputError
from cats_runtime.operations import Node, build_function, run
from cats_runtime.records import InvoiceRecord

MakeFunction = Callable[..., str]
pytestmark = pytest.mark.usefixtures("ray_session")

COUNT = """
import json, os

def main(ctx):
    words = ctx.datum.path.read_text().split()
    assert ctx.inputs[ctx.datum.input] == ctx.datum.path
    (ctx.output / (ctx.datum.name + ".json")).write_text(json.dumps({"n": len(words), "pid": 0}))
    print("counted", ctx.datum.name, "in", os.getpid())
"""


def _ls(node: Node, cid: CID | None) -> dict[str, CID]:
    assert cid is not None
    return {e.name: e.cid for e in _unixfs.ls(node.store, cid)}


def test_map_runs_one_task_per_datum_and_merges(node: Node, make_function: MakeFunction, texts: Path) -> None:
    _, fn = build_function(make_function(COUNT), node.store, mode="map")
    data = _unixfs.add_path(texts, node.store).cid
    out = run(node, function=fn, inputs={"texts": data})
    assert out.status == "succeeded" and out.computed == 4 and out.memoized == 0
    merged = _ls(node, out.output)
    assert sorted(merged) == ["t0.txt.json", "t1.txt.json", "t2.txt.json", "t3.txt.json"]
    assert json.loads(b"".join(_unixfs.cat(node.store, merged["t1.txt.json"]))) == {"n": 3, "pid": 0}
    # The merged directory is exactly what importing the same tree gives.
    target = texts.parent / "merged"
    _unixfs.get(node.store, out.output, target)  # type: ignore[arg-type]
    assert _unixfs.add_path(target, None).cid == out.output
    invoice = node.load(out.invoice)
    assert isinstance(invoice, InvoiceRecord)
    assert [d.name for d in invoice.data] == ["t0.txt", "t1.txt", "t2.txt", "t3.txt"]
    assert all(d.status == "succeeded" and not d.memoized for d in invoice.data)


def test_memo_recomputes_only_the_changed_datum(node: Node, make_function: MakeFunction, texts: Path) -> None:
    _, fn = build_function(make_function(COUNT), node.store, mode="map")
    first = run(node, function=fn, inputs={"texts": _unixfs.add_path(texts, node.store).cid})
    (texts / "t2.txt").write_text("delta epsilon zeta\n")
    second = run(node, function=fn, inputs={"texts": _unixfs.add_path(texts, node.store).cid})
    assert second.status == "succeeded" and not second.reused
    assert second.computed == 1 and second.memoized == 3
    a, b = _ls(node, first.output), _ls(node, second.output)
    assert [k for k in a if a[k] != b[k]] == ["t2.txt.json"]
    invoice = node.load(second.invoice)
    assert {d.name: d.memoized for d in invoice.data} == {
        "t0.txt": True,
        "t1.txt": True,
        "t2.txt": False,
        "t3.txt": True,
    }
    # Other params or another seed are other work: nothing is reused.
    third = run(node, function=fn, inputs={"texts": _unixfs.add_path(texts, node.store).cid}, seed=1)
    assert third.computed == 4 and third.memoized == 0
    other = run(node, function=fn, inputs={"texts": _unixfs.add_path(texts, node.store).cid}, params={"k": 1})
    assert other.computed == 4 and other.memoized == 0
    # --force recomputes everything.
    forced = run(node, function=fn, inputs={"texts": _unixfs.add_path(texts, node.store).cid}, force=True)
    assert forced.computed == 4 and forced.output == second.output


def test_failed_datum_fails_the_run_but_keeps_good_datums(
    node: Node, make_function: MakeFunction, texts: Path
) -> None:
    code = COUNT.replace(
        "    words =",
        "    if ctx.datum.name == 't3.txt':\n        raise RuntimeError('t3 is cursed')\n    words =",
    )
    _, fn = build_function(make_function(code), node.store, mode="map")
    out = run(node, function=fn, inputs={"texts": _unixfs.add_path(texts, node.store).cid})
    assert out.status == "failed" and out.bom is None and out.output is None
    assert "t3 is cursed" in (out.error or "")
    invoice = node.load(out.invoice)
    status = {d.name: d.status for d in invoice.data}
    assert status == {"t0.txt": "succeeded", "t1.txt": "succeeded", "t2.txt": "succeeded", "t3.txt": "failed"}
    assert node.catalog.counts()["memo"] == 3


def test_output_name_collision_is_an_error(node: Node, make_function: MakeFunction, texts: Path) -> None:
    _, fn = build_function(
        make_function("def main(ctx):\n    (ctx.output / 'same.txt').write_text('x')\n"),
        node.store,
        mode="map",
    )
    out = run(node, function=fn, inputs={"texts": _unixfs.add_path(texts, node.store).cid})
    assert out.status == "failed" and out.bom is None
    assert "output name collision: 'same.txt'" in (out.error or "")


def test_map_over_a_file_is_refused(node: Node, make_function: MakeFunction, texts: Path) -> None:
    _, fn = build_function(make_function(COUNT), node.store, mode="map")
    single = _unixfs.add_path(texts / "t0.txt", node.store).cid
    with pytest.raises(InvalidInputError, match="to be a directory, found a file"):
        run(node, function=fn, inputs={"texts": single})


def test_side_inputs_reach_every_datum(
    node: Node, make_function: MakeFunction, texts: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "stop.txt"
    extra.write_text("alpha\n")
    code = """
def main(ctx):
    stop = set(ctx.inputs["z_stop"].read_text().split())
    words = [w for w in ctx.datum.path.read_text().split() if w not in stop]
    (ctx.output / ctx.datum.name).write_text(" ".join(words))
"""
    _, fn = build_function(make_function(code), node.store, mode="map")
    inputs = {
        "texts": _unixfs.add_path(texts, node.store).cid,
        "z_stop": _unixfs.add_path(extra, node.store).cid,
    }
    out = run(node, function=fn, inputs=inputs)
    assert b"".join(_unixfs.cat(node.store, _ls(node, out.output)["t3.txt"])) == b""
    # Changing the side input changes every datum's memo key.
    extra.write_text("beta\n")
    inputs["z_stop"] = _unixfs.add_path(extra, node.store).cid
    again = run(node, function=fn, inputs=inputs)
    assert again.computed == 4 and again.memoized == 0
    shutil.rmtree(texts)
