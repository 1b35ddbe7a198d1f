"""An Order already run returns its BOM at once — but only a BOM this node issued itself."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from cats_runtime.cas import _unixfs
from cats_runtime.cas._car import export_car, import_car
from cats_runtime.operations import Node, build_function, rebuild_catalog, run, run_order

MakeFunction = Callable[..., str]
pytestmark = pytest.mark.usefixtures("ray_session")

FN = """
def main(ctx):
    (ctx.output / "out.txt").write_text(ctx.inputs["doc"].read_text()[::-1])
"""


def test_a_peers_bom_is_not_handed_out_as_our_result(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    _, fn = build_function(make_function(FN), node.store)
    doc = tmp_path / "doc.txt"
    doc.write_text("abc\n")
    first = run(node, function=fn, inputs={"doc": _unixfs.add_path(doc, node.store).cid})
    assert first.bom is not None
    again = run(node, function=fn, inputs={"doc": _unixfs.add_path(doc, node.store).cid})
    assert again.reused and again.bom == first.bom, "our own result is reused"
    car = io.BytesIO()
    export_car(node.store, [first.bom], car)
    with Node.open(tmp_path / "peer") as peer:
        import_car(peer.store, io.BytesIO(car.getvalue()))
        rebuild_catalog(peer)
        assert peer.catalog.boms_for_order(first.order) == [first.bom]
        order = peer.load(first.order)
        mine = run_order(peer, order, first.order)
        assert not mine.reused, "another node's claim must be re-executed, not returned as ours"
        assert mine.bom is not None and mine.bom != first.bom
        assert peer.load(mine.bom).issuer == peer.identity.did
        assert mine.output == first.output
