"""Lineage rendering grows with the graph's edges, never with its paths or Python's stack.

Graphs are built directly (no runs needed): a chain of thousands of runs (the recursive renderer
died with RecursionError at two frames per BOM), and a ladder of diamonds, whose number of
upstream paths doubles at every rung (a renderer that expands a run once per path prints 2^N
branches; one that expands it once prints each run once and points back after that).
"""

from __future__ import annotations

import json

import pytest

from cats_runtime.cas import CID, Block
from cats_runtime.operations._lineage import FORMATS, Lineage, LineageNode, render


def _cid(text: str) -> CID:
    return Block.encode(text.encode()).cid


def _chain(n: int) -> tuple[Lineage, list[CID]]:
    """data0 -> bom1 -> data1 -> ... -> bomN -> dataN, rooted at the last BOM."""
    data = [_cid("data 0")]
    boms: list[CID] = []
    g = Lineage(root=data[0])
    g.nodes[data[0]] = LineageNode(data[0], "data", "seed")
    for i in range(1, n + 1):
        bom, out = _cid(f"bom {i}"), _cid(f"data {i}")
        g.nodes[bom] = LineageNode(bom, "bom", f"step{i}")
        g.nodes[out] = LineageNode(out, "data", "output")
        g.edges.add((data[-1], bom, "in"))
        g.edges.add((bom, out, "output"))
        boms.append(bom)
        data.append(out)
    return g, boms


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_chain_of_thousands_of_runs_renders(fmt: str) -> None:
    g, boms = _chain(3000)
    g.root = boms[-1]  # upstream walk: 3,000 runs deep
    text = render(g, fmt)
    if fmt in ("text", "json"):  # full CIDs
        assert f"{boms[0]}" in text and f"{boms[-1]}" in text
    else:  # one declaration per node, labelled by name
        assert sum(1 for line in text.splitlines() if "step" in line) == len(boms)
        assert "step1" in text and "step3000" in text
    g.root = next(iter(c for c, n in g.nodes.items() if n.label == "seed"))  # downstream walk
    assert "step3000" in render(g, fmt) or f"{boms[-1]}" in render(g, fmt)


def test_the_text_tree_is_deep_and_ordered() -> None:
    g, boms = _chain(3)
    g.root = boms[-1]
    lines = render(g, "text").splitlines()
    made = [line for line in lines if "made by" in line]
    assert [line.split("made by ")[1].split()[0] for line in made] == ["step2", "step1"]
    # Each level is indented further than the one it hangs from.
    depth = [len(line) - len(line.lstrip(" │")) for line in made]
    assert depth == sorted(depth) and depth[0] < depth[1]


def _ladder(rungs: int) -> tuple[Lineage, CID]:
    """Two runs per rung, each consuming both outputs of the rung below."""
    g = Lineage(root=_cid("base a"))
    below = [_cid("base a"), _cid("base b")]
    for d in below:
        g.nodes[d] = LineageNode(d, "data", "base")
    for r in range(rungs):
        outs = []
        for side in "ab":
            bom, out = _cid(f"bom {r}{side}"), _cid(f"out {r}{side}")
            g.nodes[bom] = LineageNode(bom, "bom", f"r{r}{side}")
            g.nodes[out] = LineageNode(out, "data", "output")
            for j, d in enumerate(below):
                g.edges.add((d, bom, f"in{j}"))
            g.edges.add((bom, out, "output"))
            outs.append(out)
        below = outs
    return g, below[0]


def test_a_ladder_of_diamonds_prints_each_run_once() -> None:
    rungs = 40  # 2^40 upstream paths
    g, top = _ladder(rungs)
    [producer] = [src for src, dst, _ in g.edges if dst == top]
    g.root = producer
    lines = render(g, "text").splitlines()
    assert len(lines) < 20 * len(g.edges)
    expanded = [line for line in lines if "made by" in line and "(shown above)" not in line]
    # Every run below the root is expanded exactly once, wherever it is reached first.
    assert len(expanded) == 2 * (rungs - 1)  # both runs of every rung below the root's
    assert len({line.split("BOM ")[1].split()[0] for line in expanded}) == 2 * (rungs - 1)
    assert any("(shown above)" in line for line in lines)
    downstream = Lineage(root=_cid("base a"), nodes=g.nodes, edges=g.edges)
    down = [line for line in render(downstream, "text").splitlines() if "used by" in line]
    assert len(down) < 4 * len(g.edges)
    assert len({line.split("BOM ")[1].split()[0] for line in down}) == 2 * rungs


def test_json_lists_every_node_and_edge_once() -> None:
    g, _ = _ladder(5)
    data = json.loads(render(g, "json"))
    assert len(data["nodes"]) == len(g.nodes) and len(data["edges"]) == len(g.edges)
