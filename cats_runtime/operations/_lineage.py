"""Lineage: the graph of runs (BOMs) and data around a CID, upstream and downstream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from ..cas import CID
from ..errors import BlockNotFoundError, InvalidInputError
from ..records import BOMRecord
from ._listing import RunFacts, run_facts_many
from ._node import Node

__all__ = ["FORMATS", "Lineage", "LineageNode", "lineage", "render"]

FORMATS = ("text", "dot", "mermaid", "json")


@dataclass(frozen=True)
class LineageNode:
    """A BOM (a run) or a piece of data.

    Attributes:
        cid: The BOM's or the data's CID.
        kind: ``bom`` or ``data``.
        label: The Function's name for a BOM, the input name (or ``output``) for data.
        facts: For a BOM in the store: issuer, Function and code CIDs, params, seed, verdict.
    """

    cid: CID
    kind: Literal["bom", "data"]
    label: str
    facts: RunFacts | None = None

    @property
    def title(self) -> str:
        """The label shown: a BOM's Function name with its short CID, so equal names differ."""
        return self.facts.label if self.facts is not None else self.label


@dataclass
class _Index:
    inputs: dict[CID, list[tuple[CID, str]]] = field(default_factory=dict)
    producers: dict[CID, list[CID]] = field(default_factory=dict)
    consumers: dict[CID, list[CID]] = field(default_factory=dict)
    outputs: dict[CID, list[CID]] = field(default_factory=dict)


@dataclass
class Lineage:
    """Nodes and edges (``data -> bom`` for an input, ``bom -> data`` for the output).

    The neighbour queries use an index rebuilt when edges were added (they are only ever
    added), so rendering a graph of E edges costs O(E log E), not a scan of every edge per
    node. ``truncated`` says the walk stopped at its node cap: more BOMs lie beyond those shown.
    """

    root: CID
    nodes: dict[CID, LineageNode] = field(default_factory=dict)
    edges: set[tuple[CID, CID, str]] = field(default_factory=set)
    truncated: bool = False
    _index: tuple[int, _Index] | None = field(default=None, init=False, repr=False, compare=False)

    def _adjacent(self) -> _Index:
        if self._index is None or self._index[0] != len(self.edges):
            index = _Index()
            for src, dst, name in sorted(self.edges):
                src_bom = src in self.nodes and self.nodes[src].kind == "bom"
                if src_bom:
                    index.outputs.setdefault(src, []).append(dst)
                    index.producers.setdefault(dst, []).append(src)
                else:
                    index.inputs.setdefault(dst, []).append((src, name))
                    index.consumers.setdefault(src, []).append(dst)
            self._index = (len(self.edges), index)
        return self._index[1]

    def inputs_of(self, bom: CID) -> list[tuple[CID, str]]:
        """Data consumed by ``bom`` with the input names."""
        return list(self._adjacent().inputs.get(bom, ()))

    def producers_of(self, data: CID) -> list[CID]:
        """BOMs that produced ``data``."""
        return list(self._adjacent().producers.get(data, ()))

    def consumers_of(self, data: CID) -> list[CID]:
        """BOMs that consumed ``data``."""
        return list(self._adjacent().consumers.get(data, ()))

    def output_of(self, bom: CID) -> CID | None:
        """The data ``bom`` produced."""
        outs = self._adjacent().outputs.get(bom)
        return outs[0] if outs else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "root": str(self.root),
            "nodes": [
                {
                    "cid": str(n.cid),
                    "kind": n.kind,
                    "label": n.label,
                    **(n.facts.to_json() if n.facts else {}),
                }
                for n in sorted(self.nodes.values(), key=lambda n: str(n.cid))
            ],
            "edges": [{"from": str(a), "to": str(b), "name": name} for a, b, name in sorted(self.edges)],
            "truncated": self.truncated,
        }


def lineage(node: Node, cid: CID, *, depth: int = 32, max_nodes: int | None = None) -> Lineage:
    """Walk up (producers, inputs, parent BOMs) and down (consumers) from ``cid``, a BOM or data.

    Breadth-first, one level at a time: the catalog is asked once per level for the neighbours of
    every node on it (not once per node), each record is decoded once, and the facts of every run
    (its Order, Function and verdict) are gathered after the walk with one batched verdict query,
    so the work grows with the nodes and edges reached.

    Args:
        node: The node whose catalog and store are walked.
        cid: A BOM or data CID.
        depth: How many steps to walk each way.
        max_nodes: Add no more BOMs once the graph has this many nodes, and mark it
            ``truncated`` (None: no cap). Depth alone does not bound the work: one data CID
            consumed by thousands of runs is a single step.

    Raises:
        BlockNotFoundError: ``cid`` is neither an indexed BOM nor data the catalog knows about.
    """
    graph = Lineage(cid)
    kind = node.catalog.record_type(cid)
    if kind is not None and not kind.startswith("cats/bom"):
        raise InvalidInputError(f"expected a BOM or data CID, found a {kind} record: {cid}")
    unknown = kind is None and not node.catalog.producers(cid) and not node.catalog.consumers(cid)
    if unknown and not node.store.has(cid):
        raise BlockNotFoundError(f"{cid} is neither a BOM nor data known to the catalog at {node.home}")
    walk = _Walk(node, graph, max_nodes)
    # Upstream: from data to the runs that produced it, to their inputs and parent BOMs, and so on.
    is_bom = kind is not None
    if is_bom:
        if walk.add_bom(cid) is None:
            raise BlockNotFoundError(f"BOM {cid} is indexed but its block is not in the store at {node.home}")
    else:
        graph.nodes[cid] = LineageNode(cid, "data", "data")
    level: list[tuple[str, CID]] = [("bom" if is_bom else "data", cid)]
    seen: set[tuple[str, CID]] = set()
    d = 0
    while level and d <= depth:
        todo = []
        for item in level:  # in queue order, first occurrence only: as a FIFO walk would take them
            if item not in seen:
                seen.add(item)
                todo.append(item)
        producers = node.catalog.producers_many(c for what, c in todo if what == "data")
        following: list[tuple[str, CID]] = []
        for what, current in todo:
            if what == "bom":
                record = walk.add_bom(current)
                if record is not None:
                    following.extend(("data", data) for data in record.inputs.values())
                    following.extend(("bom", p) for p in record.parents)
            else:
                following.extend(("bom", producer) for producer in producers[current])
        level, d = following, d + 1
    # Downstream: from data to the runs that consumed it, to their outputs, and so on.
    down: list[CID] = [walk.boms[cid].output if is_bom else cid]
    seen_down: set[CID] = set()
    d = 0
    while down and d <= depth:
        datas = []
        for data in down:
            if data not in seen_down:
                seen_down.add(data)
                datas.append(data)
        consumers = node.catalog.consumers_many(datas)
        outputs: list[CID] = []
        for data in datas:
            for consumer in consumers[data]:
                record = walk.add_bom(consumer)
                if record is not None:
                    outputs.append(record.output)
        down, d = outputs, d + 1
    walk.describe_runs()
    return graph


@dataclass
class _Walk:
    """The BOMs one :func:`lineage` query has loaded, each decoded once, and the graph they fill."""

    node: Node
    graph: Lineage
    max_nodes: int | None
    boms: dict[CID, BOMRecord] = field(default_factory=dict)

    def add_bom(self, b: CID) -> BOMRecord | None:
        """Load BOM ``b`` (once) and add it with its input and output edges; None if not added."""
        graph = self.graph
        if b in self.boms:
            return self.boms[b]
        if graph.truncated:
            return None  # the cap was reached: nothing more is loaded
        try:
            record = self.node.load(b)
        except BlockNotFoundError:
            graph.nodes.setdefault(b, LineageNode(b, "bom", "(not in store)"))
            return None
        if not isinstance(record, BOMRecord):
            return None
        if self.max_nodes is not None and b != graph.root:  # the root is always shown
            new = {b, record.output, *record.inputs.values()} - graph.nodes.keys()
            if len(graph.nodes) + len(new) > self.max_nodes:
                graph.truncated = True  # this BOM and whatever lies beyond it are left out
                return None
        self.boms[b] = record
        nodes = graph.nodes
        # A placeholder keeps the node's place; describe_runs gives it its label and facts.
        nodes[b] = LineageNode(b, "bom", "run")
        # A data node keeps the first name it was reached by (built only then: a fan-out's
        # shared input is reached once per run).
        if record.output not in nodes:
            nodes[record.output] = LineageNode(record.output, "data", "output")
        graph.edges.add((b, record.output, "output"))
        for name, data in record.inputs.items():
            if data not in nodes:
                nodes[data] = LineageNode(data, "data", name)
            graph.edges.add((data, b, name))
        return record

    def describe_runs(self) -> None:
        """Give every BOM added its facts: Orders and Functions decoded once, verdicts batched."""
        memo: dict[CID, Any] = dict(self.boms)  # records shared by many runs (their Function) decoded once
        runs = [(record.order, b) for b, record in self.boms.items()]
        for (_, b), facts in zip(runs, run_facts_many(self.node, runs, memo=memo), strict=True):
            self.graph.nodes[b] = LineageNode(b, "bom", facts.function_name or "run", facts)


def _short(cid: CID) -> str:
    text = str(cid)
    return text if len(text) <= 20 else f"{text[:10]}…{text[-6:]}"


def _verdict_mark(n: LineageNode) -> str:
    facts = n.facts
    if facts is None or facts.verdict is None:
        return ""
    if facts.verdict == "match":
        return " [verified: match]"
    return f" [NOT REPRODUCED: {facts.verdict}, verification {facts.verification}]"


def _run_lines(g: Lineage) -> list[str]:
    lines = ["runs:"]
    for cid, n in sorted(g.nodes.items(), key=lambda kv: str(kv[0])):
        if n.kind != "bom":
            continue
        f = n.facts
        if f is None:
            lines.append(f"  {cid} {n.label}")
            continue
        params = json.dumps(f.params, sort_keys=True, separators=(",", ":"))
        verified = (
            "not re-executed"
            if f.verdict is None
            else f"{f.verdict} (verification {f.verification}, {f.verifications} in all)"
        )
        lines.extend(
            [
                f"  {cid} {n.title}",
                f"    function {f.function}  code {f.code}",
                f"    issuer {f.issuer or '(unsigned)'}",
                f"    seed {f.seed}  params {params}",
                f"    verified {verified}",
            ]
        )
    return lines


def _text(g: Lineage) -> str:
    lines: list[str] = []
    root = g.nodes.get(g.root)
    kind = root.kind if root else "data"
    label = f"{kind}: {root.title}" if root and root.label not in ("data", "output") else kind
    lines.append(f"{g.root} ({label}){_verdict_mark(root) if root else ''}")

    # Iterative depth-first walks (a chain of thousands of runs must not hit Python's recursion
    # limit), each run expanded once: a run reached again (a diamond in the DAG) is one line that
    # points back, so the text grows with the edges, not with the paths.
    def branch(last: bool) -> str:
        return "└─" if last else "├─"

    def indent(prefix: str, last: bool) -> str:
        return prefix + ("   " if last else "│  ")

    expanded_up: set[CID] = set()

    def walk_up(what: str, start: CID, prefix: str) -> None:
        # Work items: ("print", _, line); ("bom", cid, prefix) lists a run's inputs; ("data", cid,
        # prefix) lists the runs that produced the data. Pushed in reverse: popped in order.
        todo: list[tuple[str, CID, str]] = [(what, start, prefix)]
        while todo:
            kind, current, pre = todo.pop()
            if kind == "print":
                lines.append(pre)
                continue
            items: list[tuple[str, CID, str]] = []
            if kind == "bom":
                ins = g.inputs_of(current)
                for i, (data, name) in enumerate(ins):
                    last = i == len(ins) - 1
                    items.append(("print", data, f"{pre}{branch(last)} input {name} = {data}"))
                    items.append(("data", data, indent(pre, last)))
            else:
                producers = g.producers_of(current)
                for i, b in enumerate(producers):
                    last = i == len(producers) - 1
                    n = g.nodes[b]
                    again = b in expanded_up
                    note = " (shown above)" if again else ""
                    items.append(
                        ("print", b, f"{pre}{branch(last)} made by {n.title} BOM {b}{_verdict_mark(n)}{note}")
                    )
                    if not again:
                        expanded_up.add(b)
                        items.append(("bom", b, indent(pre, last)))
            todo.extend(reversed(items))

    def walk_down(start: CID, prefix: str) -> None:
        expanded: set[CID] = {g.root}
        todo: list[tuple[str, CID, str]] = [("data", start, prefix)]
        while todo:
            what, current, pre = todo.pop()
            if what == "print":
                lines.append(pre)
                continue
            consumers = g.consumers_of(current)
            items: list[tuple[str, CID, str]] = []
            for i, b in enumerate(consumers):
                last = i == len(consumers) - 1
                out = g.output_of(b)
                n = g.nodes[b]
                again = b in expanded
                note = " (shown above)" if again and b != g.root else ""
                items.append(
                    (
                        "print",
                        b,
                        f"{pre}{branch(last)} used by {n.title} BOM {b} -> {out}{_verdict_mark(n)}{note}",
                    )
                )
                if out is not None and not again:
                    expanded.add(b)
                    items.append(("data", out, indent(pre, last)))
            todo.extend(reversed(items))

    root_kind = root.kind if root else "data"
    lines.append("upstream:")
    if root_kind == "bom":
        expanded_up.add(g.root)
        walk_up("bom", g.root, "  ")
    else:
        walk_up("data", g.root, "  ")
    lines.append("downstream:")
    start = g.output_of(g.root) if root_kind == "bom" else g.root
    if start is not None:
        if root_kind == "bom":
            lines.append(f"  output {start}")
        walk_down(start, "  ")
    if lines[-1] == "downstream:":
        lines.append("  (not used by any run yet)")
    if any(n.kind == "bom" for n in g.nodes.values()):
        lines.extend(_run_lines(g))
    return "\n".join(lines)


def _ids(g: Lineage) -> dict[CID, str]:
    return {cid: f"n{i}" for i, cid in enumerate(sorted(g.nodes, key=str))}


def _dot_str(text: str) -> str:
    """A DOT quoted string: names come from other organizations' records and must not add attributes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot(g: Lineage) -> str:
    ids = _ids(g)
    out = ["digraph lineage {", "  rankdir=LR;"]
    for cid, n in sorted(g.nodes.items(), key=lambda kv: ids[kv[0]]):
        shape = "box" if n.kind == "bom" else "ellipse"
        style = ", penwidth=2" if cid == g.root else ""
        label = _dot_str(f"{n.title}\n{_short(cid)}")
        out.append(f"  {ids[cid]} [shape={shape}{style}, label={label}];")
    for a, b, name in sorted(g.edges):
        out.append(f"  {ids[a]} -> {ids[b]} [label={_dot_str(name)}];")
    out.append("}")
    return "\n".join(out)


def _mermaid(g: Lineage) -> str:
    ids = _ids(g)
    out = ["graph LR"]
    for cid, n in sorted(g.nodes.items(), key=lambda kv: ids[kv[0]]):
        text = f"{n.title}<br/>{_short(cid)}".replace('"', "'")
        out.append(f'  {ids[cid]}["{text}"]' if n.kind == "bom" else f'  {ids[cid]}(("{text}"))')
    for a, b, name in sorted(g.edges):
        out.append(f"  {ids[a]} -->|{name}| {ids[b]}")
    return "\n".join(out)


def render(g: Lineage, fmt: str) -> str:
    """The graph as ``text`` (a tree), ``dot`` (Graphviz), ``mermaid`` or ``json``."""
    if fmt == "text":
        return _text(g)
    if fmt == "dot":
        return _dot(g)
    if fmt == "mermaid":
        return _mermaid(g)
    if fmt == "json":
        return json.dumps(g.to_json(), indent=2, sort_keys=True)
    raise InvalidInputError(f"expected a format in {list(FORMATS)}, found {fmt!r}")
