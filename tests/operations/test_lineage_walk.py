"""The lineage walk grows with the nodes and edges it reaches: a few catalog statements per level
of the walk (not one or two per run), and each record decoded once per query.

The graph is built from real records in a real store and catalog (no runs needed): a root run
whose output is read by 600 runs (more than one batched statement takes), 100 of which are read
in turn by one more run each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scale_runs import run_blocks

from cats_runtime.cas import CID, Block, add_directory
from cats_runtime.operations import Node, lineage, rebuild_catalog, render_lineage
from cats_runtime.records import (
    BOMRecord,
    FunctionRecord,
    InvoiceRecord,
    StructureRecord,
    VerificationRecord,
    decode_record,
)

CHILDREN = 600
GRANDCHILDREN = 100


def _run(
    function: FunctionRecord, structure: StructureRecord, i: int, datum: CID, parents: list[CID]
) -> tuple[BOMRecord, list[Block]]:
    """The blocks of run ``i`` (the shared synthetic runs of the scale tests) and its BOM."""
    made = run_blocks(function, structure, i, datum, parents)
    bom = decode_record(made[-1].data)
    assert isinstance(bom, BOMRecord)
    return bom, made


@pytest.fixture
def fan_out(tmp_path: Path) -> Iterator[tuple[Node, BOMRecord, list[BOMRecord], list[BOMRecord]]]:
    with Node.open(tmp_path / "home") as node:
        code = add_directory([], None).cid
        function = FunctionRecord(name="step", code=code, entrypoint="m:f", mode="batch", python="3.11")
        structure = StructureRecord(cloud="local", stack="local", program=None, outputs=[])
        blocks = [function.to_block(), structure.to_block()]
        root, made = _run(function, structure, -1, Block.encode(b"seed").cid, [])
        blocks += made
        children, grandchildren = [], []
        for i in range(CHILDREN):
            child, made = _run(function, structure, i, root.output, [root.cid])
            children.append(child)
            blocks += made
        for i, child in enumerate(children[:GRANDCHILDREN]):
            grandchild, made = _run(function, structure, CHILDREN + i, child.output, [child.cid])
            grandchildren.append(grandchild)
            blocks += made
        # One child was re-executed and did not reproduce: its facts must say so.
        again = InvoiceRecord(
            order=children[7].order, status="failed", started_ms=5, finished_ms=6, error="x"
        )
        check = VerificationRecord(
            bom=children[7].cid,
            invoice=again.cid,
            verdict="error",
            expected=children[7].output,
            structure=structure.cid,
        )
        blocks += [again.to_block(), check.to_block()]
        node.store.put_many(blocks)
        rebuild_catalog(node)
        yield node, root, children, grandchildren


def test_the_walk_asks_the_catalog_per_level_not_per_run(
    fan_out: tuple[Node, BOMRecord, list[BOMRecord], list[BOMRecord]],
) -> None:
    node, root, children, grandchildren = fan_out
    statements: list[str] = []
    node.catalog._db.set_trace_callback(statements.append)
    try:
        graph = lineage(node, root.cid, depth=3)
    finally:
        node.catalog._db.set_trace_callback(None)
    runs = {root.cid, *(c.cid for c in children), *(g.cid for g in grandchildren)}
    assert {c for c, n in graph.nodes.items() if n.kind == "bom"} == runs
    # 701 runs over three levels down and one up: one statement (or one per 500 keys) per level
    # and kind of question, where one per run (producers, consumers, verdict) made over 1,400.
    assert len(statements) <= 16, "\n".join(statements[:20])
    facts = graph.nodes[children[7].cid].facts
    assert facts is not None and facts.verdict == "error" and facts.verifications == 1
    other = graph.nodes[children[8].cid].facts
    assert other is not None and other.verdict is None and other.params == {"i": 8} and other.seed == 9


def test_each_record_is_decoded_once_per_query(
    fan_out: tuple[Node, BOMRecord, list[BOMRecord], list[BOMRecord]], monkeypatch: pytest.MonkeyPatch
) -> None:
    node, root, children, _ = fan_out
    loads: Counter[CID] = Counter()
    real_load = node.load

    def counted(cid: CID) -> Any:
        loads[cid] += 1
        return real_load(cid)

    monkeypatch.setattr(node, "load", counted)
    graph = lineage(node, root.cid, depth=5)
    assert max(loads.values()) == 1, loads.most_common(3)
    # Every run's BOM and Order, and the one Function they share.
    assert len(loads) == 2 * (1 + CHILDREN + GRANDCHILDREN) + 1
    assert loads[root.function] == 1 and all(loads[c.order] == 1 for c in children)
    text = render_lineage(graph, "text")
    last = children[-1]
    assert f"used by step …{str(last.function)[-6:]} BOM {last.cid} -> {last.output}" in text


def test_a_walk_of_thousands_of_levels_needs_no_recursion(tmp_path: Path) -> None:
    """A chain deeper than Python's recursion limit, walked both ways with no depth limit."""
    with Node.open(tmp_path / "home") as node:
        function = FunctionRecord(
            name="link", code=add_directory([], None).cid, entrypoint="m:f", mode="batch", python="3.11"
        )
        structure = StructureRecord(cloud="local", stack="local", program=None, outputs=[])
        blocks = [function.to_block(), structure.to_block()]
        datum, parents, chain = Block.encode(b"start").cid, [], []
        for i in range(1500):
            bom, made = _run(function, structure, i, datum, parents)
            blocks += made
            chain.append(bom)
            datum, parents = bom.output, [bom.cid]
        node.store.put_many(blocks)
        rebuild_catalog(node)
        up = lineage(node, chain[-1].cid, depth=10_000)
        down = lineage(node, chain[0].cid, depth=10_000)
        for graph in (up, down):
            assert sum(1 for n in graph.nodes.values() if n.kind == "bom") == len(chain)
            assert all(fmt and render_lineage(graph, fmt) for fmt in ("text", "json", "dot", "mermaid"))
