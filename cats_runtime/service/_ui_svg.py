"""The lineage graph drawn as inline SVG: a small layered layout, no Graphviz, no script.

Layers follow the edges (data -> run -> data), so inputs sit left of the runs that used them
and outputs right; within a layer, nodes are ordered by the mean position of their
neighbours (a few barycenter sweeps), which untangles the usual chains and fans. Every
label is escaped: function names and input names come from records anyone can write.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..cas import CID
from ..operations import Lineage

__all__ = ["MAX_SVG_NODES", "legend", "lineage_svg", "short_cid", "short_did"]

MAX_SVG_NODES: Final = 200
"""Graphs larger than this are listed, not drawn (a drawing that large is unreadable)."""

_W: Final = 190
_H: Final = 58
_GAP_X: Final = 90
_GAP_Y: Final = 22
_PAD: Final = 12
_OWN: Final = "#cfe3ff"
_UNSIGNED: Final = "#e4e4e4"
_PEERS: Final = ("#ffe0b3", "#d8f0c8", "#f3d1ef", "#fff3a8", "#cdeeee", "#f6cfcf")


def short_cid(cid: CID | str) -> str:
    """``bafy…`` shortened to its first 10 and last 6 characters."""
    text = str(cid)
    return text if len(text) <= 20 else f"{text[:10]}…{text[-6:]}"


def short_did(did: str) -> str:
    """A did:key shortened to ``did:key:z6Mk…`` plus its last 6 characters."""
    return did if len(did) <= 24 else f"{did[:14]}…{did[-6:]}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _clip(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Placed:
    layer: int
    order: float
    x: int = 0
    y: int = 0


def _layers(g: Lineage) -> dict[CID, int]:
    """Longest-path layering; a cycle (an identity run: output == input) is broken, not looped."""
    preds: dict[CID, set[CID]] = {n: set() for n in g.nodes}
    succs: dict[CID, set[CID]] = {n: set() for n in g.nodes}
    for a, b, _ in g.edges:
        if a in g.nodes and b in g.nodes and a != b:
            succs[a].add(b)
            preds[b].add(a)
    indeg = {n: len(p) for n, p in preds.items()}
    layer = dict.fromkeys(g.nodes, 0)
    remaining = set(g.nodes)
    ready = sorted((n for n in remaining if indeg[n] == 0), key=str)
    while remaining:
        if not ready:  # a cycle: start from the node with the fewest unresolved inputs
            ready = [min(remaining, key=lambda n: (indeg[n], str(n)))]
        n = ready.pop(0)
        if n not in remaining:
            continue
        remaining.discard(n)
        for m in sorted(succs[n], key=str):
            if m in remaining:
                layer[m] = max(layer[m], layer[n] + 1)
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
    return layer


def _order(g: Lineage, layer: dict[CID, int]) -> dict[CID, _Placed]:
    placed = {
        n: _Placed(layer[n], i)
        for i, n in enumerate(sorted(g.nodes, key=lambda c: (g.nodes[c].kind, str(c))))
    }
    neighbours: dict[CID, list[CID]] = {n: [] for n in g.nodes}
    for a, b, _ in g.edges:
        if a in placed and b in placed:
            neighbours[a].append(b)
            neighbours[b].append(a)
    depth = max(layer.values(), default=0)
    for sweep in range(4):
        span = range(depth + 1) if sweep % 2 == 0 else range(depth, -1, -1)
        for level in span:
            members = [n for n in placed if placed[n].layer == level]
            for n in members:
                near = [placed[m].order for m in neighbours[n]]
                if near:
                    placed[n].order = sum(near) / len(near)
            members.sort(key=lambda n: (placed[n].order, str(n)))
            for i, n in enumerate(members):
                placed[n].order = i
    return placed


def _colors(issuers: Mapping[CID, str | None], own_did: str) -> dict[str | None, str]:
    colors: dict[str | None, str] = {None: _UNSIGNED, own_did: _OWN}
    for did in sorted({d for d in issuers.values() if d is not None and d != own_did}):
        digest = hashlib.sha256(did.encode()).digest()[0]
        colors[did] = _PEERS[digest % len(_PEERS)]
    return colors


def _node_svg(g: Lineage, cid: CID, p: _Placed, fill: str, issuer: str | None, root: bool) -> str:
    n = g.nodes[cid]
    href = f"/ui/bom/{cid}" if n.kind == "bom" else f"/ui/ipfs/{cid}"
    stroke = 3 if root else 1
    rx = 4 if n.kind == "bom" else 18
    who = "" if n.kind != "bom" else ("unsigned" if issuer is None else short_did(issuer))
    title = f"{n.kind} {cid}" + (f"\nissuer {issuer}" if issuer else "")
    lines = [
        f'<a href="{_e(href)}" class="lnode lnode-{n.kind}" data-cid="{_e(cid)}">',
        f"<title>{_e(title)}</title>",
        f'<rect x="{p.x}" y="{p.y}" width="{_W}" height="{_H}" rx="{rx}" fill="{fill}" '
        f'stroke="#333" stroke-width="{stroke}"/>',
        f'<text x="{p.x + _W // 2}" y="{p.y + 18}" text-anchor="middle" font-size="13" '
        f'font-weight="bold">{_e(_clip(n.label))}</text>',
        f'<text x="{p.x + _W // 2}" y="{p.y + 34}" text-anchor="middle" font-size="11" '
        f'font-family="monospace">{_e(short_cid(cid))}</text>',
    ]
    if who:
        lines.append(
            f'<text x="{p.x + _W // 2}" y="{p.y + 49}" text-anchor="middle" font-size="10" '
            f'class="issuer">{_e(who)}</text>'
        )
    lines.append("</a>")
    return "".join(lines)


def _edge_svg(a: _Placed, b: _Placed, name: str) -> str:
    x1, y1 = a.x + _W, a.y + _H // 2
    x2, y2 = b.x, b.y + _H // 2
    mid = (x1 + x2) // 2
    path = (
        f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 6},{y2}" fill="none" stroke="#555" '
        f'stroke-width="1.3" marker-end="url(#arrow)"/>'
    )
    if name == "output":
        return path
    return (
        path + f'<text x="{mid}" y="{(y1 + y2) // 2 - 4}" text-anchor="middle" font-size="10" '
        f'fill="#444">{_e(_clip(name, 18))}</text>'
    )


def lineage_svg(g: Lineage, issuers: Mapping[CID, str | None], own_did: str) -> str:
    """The graph as an ``<svg>`` element, each node a link to its page, BOMs colored by issuer."""
    layer = _layers(g)
    placed = _order(g, layer)
    rows = max((sum(1 for p in placed.values() if p.layer == lv) for lv in set(layer.values())), default=1)
    height = _PAD * 2 + rows * _H + (rows - 1) * _GAP_Y
    for level in set(layer.values()):
        members = sorted((p for p in placed.values() if p.layer == level), key=lambda p: p.order)
        top = (height - (len(members) * _H + (len(members) - 1) * _GAP_Y)) // 2
        for i, p in enumerate(members):
            p.x = _PAD + level * (_W + _GAP_X)
            p.y = top + i * (_H + _GAP_Y)
    width = _PAD * 2 + (max(layer.values(), default=0) + 1) * (_W + _GAP_X) - _GAP_X
    colors = _colors(issuers, own_did)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/>'
        "</marker></defs>",
    ]
    for a, b, name in sorted(g.edges, key=lambda e: (str(e[0]), str(e[1]), e[2])):
        if a in placed and b in placed and a != b:
            parts.append(_edge_svg(placed[a], placed[b], name))
    for cid in sorted(placed, key=str):
        node = g.nodes[cid]
        issuer = issuers.get(cid) if node.kind == "bom" else None
        fill = colors.get(issuer, _UNSIGNED) if node.kind == "bom" else "#ffffff"
        parts.append(_node_svg(g, cid, placed[cid], fill, issuer, cid == g.root))
    parts.append("</svg>")
    return "".join(parts)


def legend(issuers: Mapping[CID, str | None], own_did: str) -> list[tuple[str, str | None, str]]:
    """``(color, did, origin)`` for every issuer in the graph, this node first."""
    colors = _colors(issuers, own_did)
    dids = sorted({d for d in issuers.values()}, key=lambda d: (d != own_did, d is None, d or ""))
    out: list[tuple[str, str | None, str]] = []
    for did in dids:
        origin = "unsigned" if did is None else ("this node" if did == own_did else "peer")
        out.append((colors.get(did, _UNSIGNED), did, origin))
    return out
