"""Anonymous lineage views are bounded in nodes, not only in depth, and say when they are cut."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from nodeproc import start_node
from ui_homes import _code, _put, _run

from cats_runtime.cas import add_bytes, add_path
from cats_runtime.operations import LINEAGE_MAX_NODES, Node, lineage, local_structure, store_structure
from cats_runtime.records import FunctionRecord

RUNS = 300  # runs over one input: one step deep, 2 * RUNS + 1 nodes


def test_a_wide_lineage_is_truncated_with_a_marker(tmp_path: Path) -> None:
    home = tmp_path / "node"
    with Node.open(home) as node:
        structure = store_structure(local_structure(), node.store)
        code = add_path(_code(tmp_path, "code"), node.store).cid
        fn = _put(
            node, FunctionRecord(name="count", code=code, entrypoint="fn:main", mode="batch", python="3.11")
        )
        shared = add_bytes(b"one input many runs read\n", node.store)
        boms = [
            _run(
                node, fn, structure, {"data": shared}, add_bytes(b"out %d\n" % i, node.store), {}, i, [], None
            )[0]
            for i in range(RUNS)
        ]
        assert len(lineage(node, shared).nodes) == 2 * RUNS + 1  # the library walk itself is whole
    served = start_node(home)
    try:
        started = time.monotonic()
        body = httpx.get(f"{served.url}/lineage/{shared}", timeout=60).json()
        assert body["truncated"] is True
        assert len(body["nodes"]) <= LINEAGE_MAX_NODES < 2 * RUNS + 1
        page = httpx.get(f"{served.url}/lineage/{shared}", headers={"Accept": "text/html"}, timeout=60)
        assert page.status_code == 200 and 'id="lineage-truncated"' in page.text
        bom_page = httpx.get(f"{served.url}/ui/bom/{boms[0]}", headers={"Accept": "text/html"}, timeout=60)
        assert bom_page.status_code == 200
        assert time.monotonic() - started < 60
        small = httpx.get(f"{served.url}/lineage/{boms[0]}", timeout=60).json()
        assert small["truncated"] is False  # a BOM's own lineage here: the run, its input, its output...
    finally:
        served.stop()
