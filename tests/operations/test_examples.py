"""The bundled examples run, chain, and reproduce (what examples/demo.sh shows)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from cats_runtime.cas import CID, _unixfs
from cats_runtime.operations import Node, build_function, run, verify

pytestmark = pytest.mark.usefixtures("ray_session")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _files(node: Node, cid: CID | None) -> dict[str, bytes]:
    assert cid is not None
    return {e.name: b"".join(_unixfs.cat(node.store, e.cid)) for e in _unixfs.ls(node.store, cid)}


def test_feature_engineering_example(node: Node) -> None:
    _, fn = build_function(f"{EXAMPLES / 'features'}:transform:engineer", node.store)
    raw = _unixfs.add_path(EXAMPLES / "data" / "sensors.csv", node.store).cid
    out = run(node, function=fn, inputs={"raw": raw}, params={"digits": 3})
    assert out.status == "succeeded", out.error
    files = _files(node, out.output)
    rows = list(csv.DictReader(io.StringIO(files["features.csv"].decode())))
    assert len(rows) == 90 and {"temp_c_z", "heat_index", "is_windy"} <= set(rows[0])
    assert abs(sum(float(r["temp_c_z"]) for r in rows)) < 0.5  # standardized
    assert set(json.loads(files["stats.json"])) == {"temp_c", "humidity", "wind_kmh"}


def test_wordcount_chain_example(node: Node) -> None:
    _, count = build_function(f"{EXAMPLES / 'wordcount'}:count:count", node.store, mode="map")
    texts = _unixfs.add_path(EXAMPLES / "data" / "texts", node.store).cid
    first = run(node, function=count, inputs={"texts": texts})
    assert first.status == "succeeded" and first.computed == 5
    assert sorted(_files(node, first.output)) == [
        "harbor.json",
        "library.json",
        "market.json",
        "ridge.json",
        "station.json",
    ]
    _, combine = build_function(f"{EXAMPLES / 'totals'}:combine:combine", node.store)
    second = run(node, function=combine, inputs={"counts": first.output}, params={"top": 3})  # type: ignore[dict-item]
    assert second.status == "succeeded"
    totals = json.loads(_files(node, second.output)["totals.json"])
    assert totals["files"] == 5 and next(iter(totals["top"])) == "the"
    assert list(node.load(second.bom).parents) == [first.bom]  # type: ignore[arg-type]
    assert verify(node, second.bom).verdict == "match"  # type: ignore[arg-type]
