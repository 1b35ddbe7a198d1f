"""HTML of the node's data-product browser, built from the views of ``operations``.

Plain string building: every value that comes from a record, a log, a path or the runs table
goes through :func:`e` (``html.escape`` with quotes) before it enters the page, and URLs are
built from validated CIDs and percent-encoded entry names only. The pages carry no script and
load nothing but ``/ui/style.css`` from this node; the Content-Security-Policy the routes send
enforces that.
"""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from .. import __version__
from ..cas import CID, DAG_CBOR
from ..operations import (
    INLINE_TEXT_BYTES,
    BomPage,
    BomRef,
    DataLink,
    DataPage,
    Lineage,
    LineagePage,
    LogView,
    RecordPage,
    RunView,
)
from ._ui_svg import MAX_SVG_NODES, legend, lineage_svg, short_cid, short_did

__all__ = [
    "STYLE",
    "bom_html",
    "data_html",
    "e",
    "error_html",
    "lineage_html",
    "record_html",
    "runs_html",
]

STYLE: Final = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
header{background:#1f3a5f;color:#fff;padding:.7rem 1.5rem;display:flex;gap:1.5rem;align-items:baseline;
flex-wrap:wrap}
header a{color:#fff;text-decoration:none;font-weight:600}
header .did{font-family:monospace;font-size:.85em;opacity:.85}
main{padding:1rem 1.5rem 3rem;max-width:1400px}
h1{font-size:1.35rem;margin:.6rem 0 .8rem;word-break:break-all}
h2{font-size:1.08rem;margin:1.6rem 0 .5rem;border-bottom:1px solid #d5d9e0;padding-bottom:.2rem}
table{border-collapse:collapse;background:#fff;font-size:.9rem}
th,td{border:1px solid #dde1e7;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
table.kv th{width:11rem}
code,.cid{font-family:ui-monospace,monospace;font-size:.86em;word-break:break-all}
a{color:#1a56b3}
pre{background:#fff;border:1px solid #dde1e7;padding:.6rem;overflow:auto;max-height:32rem;
font-size:.82rem;white-space:pre-wrap;word-break:break-word}
.badge{display:inline-block;padding:.05rem .45rem;border-radius:.6rem;font-size:.78rem;font-weight:600;
background:#e4e7ec;color:#333;white-space:nowrap}
.ok,.succeeded,.valid,.match{background:#d3f1da;color:#165c2a}
.bad,.failed,.invalid,.mismatch,.error{background:#fbd5d5;color:#8a1c1c}
.queued,.running,.fetching,.unsigned{background:#fff0c2;color:#6b4e00}
.peer{background:#ffe0b3;color:#7a4300}
.own{background:#cfe3ff;color:#143d7a}
.muted{color:#6b7280}
.err{color:#8a1c1c;font-size:.85rem;white-space:pre-wrap;word-break:break-word;max-width:34rem}
.graph{overflow:auto;background:#fff;border:1px solid #dde1e7;padding:.4rem}
.legend span{margin-right:1rem}
.swatch{display:inline-block;width:.9rem;height:.9rem;border:1px solid #333;vertical-align:middle;
margin-right:.3rem}
.sw-0{background:#cfe3ff}.sw-1{background:#ffe0b3}.sw-2{background:#d8f0c8}.sw-3{background:#f3d1ef}
.sw-4{background:#fff3a8}.sw-5{background:#cdeeee}.sw-6{background:#f6cfcf}.sw-7{background:#e4e4e4}
nav.crumbs{font-size:.95rem;margin:.3rem 0}
"""
"""The stylesheet, served from ``/ui/style.css`` (a CSP without 'unsafe-inline' forbids inline styles)."""

_SWATCHES: Final = ("#cfe3ff", "#ffe0b3", "#d8f0c8", "#f3d1ef", "#fff3a8", "#cdeeee", "#f6cfcf", "#e4e4e4")


def e(value: object) -> str:
    """``value`` as text safe in HTML content and in quoted attributes."""
    return html.escape(str(value), quote=True)


def when(ms: int | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if ms is None or ms <= 0:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def href(cid: CID, kind: str | None = None) -> str:
    """Where a CID's page is: a BOM's page, a record's, or the data browser."""
    if kind == "bom":
        return f"/ui/bom/{cid}"
    if cid.codec == DAG_CBOR:
        return f"/ui/record/{cid}"
    return f"/ui/ipfs/{cid}"


def link(cid: CID | None, kind: str | None = None, *, text: str | None = None, full: bool = False) -> str:
    """``cid`` as a link to its page (the full CID in the tooltip)."""
    if cid is None:
        return ""
    label = text if text is not None else (str(cid) if full else short_cid(cid))
    return f'<a class="cid" href="{e(href(cid, kind))}" title="{e(cid)}">{e(label)}</a>'


def badge(text: str, cls: str | None = None) -> str:
    """A small colored label."""
    css = (cls or text).replace(" ", "-")
    return f'<span class="badge {e(css)}">{e(text)}</span>'


def _origin_badge(origin: str) -> str:
    return badge(origin, {"this node": "own", "peer": "peer"}.get(origin, "unsigned"))


def issuer_html(issuer: str | None, origin: str, *, full: bool = False) -> str:
    """Who signed a BOM, and whether that is this node or a peer."""
    if issuer is None:
        return _origin_badge(origin)
    text = issuer if full else short_did(issuer)
    return f'<code class="did" title="{e(issuer)}">{e(text)}</code> {_origin_badge(origin)}'


def page(title: str, body: str, own_did: str) -> str:
    """A whole document: header with the node's identity, then ``body``."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · CAT Node</title>
<link rel="stylesheet" href="/ui/style.css">
</head><body>
<header><a href="/">CAT Node</a>
<span class="did" id="node-did" title="this node's did:key">{e(own_did)}</span>
<span class="muted">CATs {e(__version__)}</span>
<a href="/openapi.json">API</a></header>
<main>
{body}
</main></body></html>
"""


def error_html(status: int, error: str, message: str, own_did: str) -> str:
    """The page of a failed request (a missing block, a bad CID...)."""
    body = f"""<h1>{e(status)} · {e(error)}</h1>
<p class="err" id="error-message">{e(message)}</p>
<p><a href="/">Back to the runs</a></p>"""
    return page(f"{status} {error}", body, own_did)


# -- runs ----------------------------------------------------------------------------------


def _run_row(r: RunView) -> str:
    fn = (
        f"{e(r.function_name) or '<span class=muted>?</span>'}<br>{link(r.function)}"
        if r.function is not None
        else '<span class="muted">(function not on this node)</span>'
    )
    verdicts = " ".join(badge(v) for v in r.verdicts)
    error = f'<div class="err">{e(r.error)}</div>' if r.error else ""
    org = e(r.org) if r.org else '<span class="muted">—</span>'
    bom = link(r.bom, "bom") if r.bom else '<span class="muted">none</span>'
    record = link(r.invoice, text="invoice") if r.invoice else ""
    return (
        f'<tr class="run" data-status="{e(r.status)}"><td>{e(when(r.time_ms))}</td>'
        f"<td>{badge(r.status)}{' ' + verdicts if verdicts else ''}{error}</td>"
        f'<td class="fn">{fn}</td><td class="issuer">{issuer_html(r.issuer, r.origin)}</td>'
        f'<td class="org">{org}</td><td class="bom">{bom}<br>{record}</td>'
        f'<td class="out">{link(r.output)}</td></tr>'
    )


def runs_html(rows: Sequence[RunView], own_did: str) -> str:
    """The front page: recent runs, this node's and those fetched from peers, failed ones too."""
    table = "\n".join(_run_row(r) for r in rows) or '<tr><td colspan="7">no runs yet</td></tr>'
    body = f"""<h1>Recent runs</h1>
<p class="muted">Every run this node holds a record of: run here (by <code>cats run</code> on this
home or submitted as an Order), or fetched from a peer (signed by another did:key). Organization
is the token holder that submitted the Order to this node.</p>
<table id="runs"><thead><tr><th>time</th><th>status</th><th>function</th><th>issuer</th>
<th>organization</th><th>BOM</th><th>output</th></tr></thead>
<tbody>
{table}
</tbody></table>"""
    return page("Recent runs", body, own_did)


# -- a BOM ---------------------------------------------------------------------------------


def _kv(rows: Iterable[tuple[str, str]], table_id: str | None = None) -> str:
    ident = f' id="{e(table_id)}"' if table_id else ""
    cells = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"{ident}>{cells}</table>'


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)


def _data_rows(links: Sequence[DataLink], table_id: str) -> str:
    if not links:
        return '<p class="muted">none</p>'
    rows = "".join(
        f'<tr><td class="name">{e(d.name)}</td><td>{link(d.cid, full=True)}</td>'
        f"<td>{e(d.kind) if d.kind != 'missing' else badge('not on this node', 'unsigned')}</td>"
        f"<td>{e(_size(d.size))}</td></tr>"
        for d in links
    )
    head = "<tr><th>name</th><th>CID</th><th>kind</th><th>size</th></tr>"
    return f'<table id="{e(table_id)}">{head}{rows}</table>'


def _bom_refs(refs: Sequence[BomRef], list_id: str, empty: str) -> str:
    if not refs:
        return f'<p class="muted" id="{e(list_id)}">{e(empty)}</p>'
    items = []
    for r in refs:
        if not r.present:
            items.append(f"<li>{link(r.cid, 'bom', full=True)} {badge('not on this node', 'unsigned')}</li>")
            continue
        items.append(
            f'<li><span class="fn-name">{e(r.function_name)}</span> {link(r.cid, "bom", full=True)} '
            f"signed by {issuer_html(r.issuer, r.origin)}</li>"
        )
    return f'<ul id="{e(list_id)}">{"".join(items)}</ul>'


def _log_html(log: LogView | None) -> str:
    if log is None or log.missing:
        return '<p class="muted" id="log">no log on this node</p>'
    note = (
        f'<p class="muted">first {e(_size(len(log.text.encode()) or 0))} shown; the whole log: '
        f"{link(log.cid, full=True)}</p>"
        if log.truncated
        else f'<p class="muted">log file {link(log.cid, full=True)}</p>'
    )
    return f'{note}<pre id="log">{e(log.text)}</pre>'


def _graph_html(g: Lineage, issuers: Mapping[CID, str | None], own_did: str) -> str:
    return _truncation_note(g) + _graph_body(g, issuers, own_did)


def _truncation_note(g: Lineage) -> str:
    if not g.truncated:
        return ""
    return (
        f'<p class="muted" id="lineage-truncated">Truncated: only the first {len(g.nodes)} nodes are '
        "shown (the graph goes on; <code>cats lineage</code> on a node walks it whole).</p>"
    )


def _graph_body(g: Lineage, issuers: Mapping[CID, str | None], own_did: str) -> str:
    if len(g.nodes) > MAX_SVG_NODES:
        items = "".join(
            f"<li>{e(n.kind)} {e(n.label)} {link(c, n.kind if n.kind == 'bom' else None, full=True)}</li>"
            for c, n in sorted(g.nodes.items(), key=lambda kv: str(kv[0]))
        )
        return f'<p class="muted">{len(g.nodes)} nodes: too many to draw.</p><ul id="lineage">{items}</ul>'
    keys = list(dict.fromkeys(_SWATCHES))
    parts = []
    for color, did, origin in legend(issuers, own_did):
        css = f"sw-{keys.index(color)}" if color in keys else "sw-7"
        who = "unsigned" if did is None else short_did(did)
        parts.append(
            f'<span><i class="swatch {css}"></i><code title="{e(did or "")}">{e(who)}</code> '
            f"{_origin_badge(origin)}</span>"
        )
    return (
        f'<div class="graph" id="lineage">{lineage_svg(g, issuers, own_did)}</div>'
        f'<p class="legend">BOMs by issuer: {"".join(parts) or "<span>none</span>"}'
        f' <span class="muted">rectangles are runs, rounded boxes data; click to open</span></p>'
    )


def _function_html(p: BomPage) -> str:
    f = p.function
    if not f.present:
        return f"<p>{link(f.cid, full=True)} {badge('not on this node', 'unsigned')}</p>"
    rows = [
        ("name", f'<span id="function-name">{e(f.name)}</span>'),
        ("record", link(f.cid, full=True)),
        ("code", f'<span id="code">{link(f.code, full=True)}</span>'),
        ("entrypoint", f'<code id="entrypoint">{e(f.entrypoint)}</code>'),
        ("mode", f'<span id="mode">{e(f.mode)}</span>'),
        ("python", e(f.python)),
    ]
    if f.requirements is not None:
        rows.append(("requirements", link(f.requirements, full=True)))
    if f.image is not None:
        rows.append(("image", f"<code>{e(f.image)}</code>"))
    return _kv(rows, "function")


def _order_html(p: BomPage) -> str:
    s = p.structure
    where = (
        f"{e(s.cloud)} / {e(s.stack)}" + (f" program {link(s.program, full=True)}" if s.program else "")
        if s.present
        else badge("not on this node", "unsigned")
    )
    params = json.dumps(dict(p.params), indent=2, sort_keys=True, ensure_ascii=False)
    return _kv(
        [
            ("order", link(p.order, full=True)),
            ("params", f'<pre id="params">{e(params)}</pre>'),
            ("seed", f'<code id="seed">{e("" if p.seed is None else p.seed)}</code>'),
            ("structure", f"{where}<br>{link(s.cid, full=True)}"),
        ],
        "order",
    )


def _invoice_html(p: BomPage) -> str:
    inv = p.invoice
    if not inv.present:
        return f"<p>{link(inv.cid, full=True)} {badge('not on this node', 'unsigned')}</p>"
    seconds = max(0, inv.finished_ms - inv.started_ms) / 1000
    facts = "".join(
        f"<tr><th>{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in sorted(inv.executor.items())
    )
    data = f"{inv.data} data, {inv.failed} failed, {inv.memoized} memoized"
    return _kv(
        [
            ("invoice", link(inv.cid, full=True)),
            ("status", badge(inv.status)),
            ("started", e(when(inv.started_ms))),
            ("finished", f"{e(when(inv.finished_ms))} ({seconds:.1f} s)"),
            ("data", e(data)),
            ("executor", f'<table class="kv">{facts}</table>'),
        ],
        "invoice",
    )


def _verifications_html(p: BomPage) -> str:
    if not p.verifications:
        return '<p class="muted" id="verifications">not re-executed on this node yet</p>'
    rows = "".join(
        f"<tr><td>{badge(v.verdict)}</td><td>{link(v.found, full=True) or '—'}</td>"
        f"<td>{'<br>'.join(e(d) for d in v.differences) or '—'}</td><td>{link(v.cid)}</td>"
        f"<td>{link(v.invoice)}</td><td>{link(v.structure)}</td></tr>"
        for v in p.verifications
    )
    return (
        '<table id="verifications"><tr><th>verdict</th><th>output found</th><th>differences</th>'
        f"<th>record</th><th>invoice</th><th>structure</th></tr>{rows}</table>"
    )


def bom_html(p: BomPage, own_did: str) -> str:
    """The page of one BOM: signature, Function, Order, data, run, verifications, lineage, log."""
    summary = _kv(
        [
            ("signature", f'<span id="signature">{badge(p.signature)}</span>'),
            ("issuer", f'<span id="issuer">{issuer_html(p.issuer, p.origin, full=True)}</span>'),
            ("as JSON", f'<a href="/boms/{e(p.cid)}">/boms/{e(short_cid(p.cid))}</a>'),
        ],
        "summary",
    )
    body = f"""<h1>BOM <span class="cid" id="bom-cid">{e(p.cid)}</span></h1>
{summary}
<h2>Function</h2>{_function_html(p)}
<h2>Order</h2>{_order_html(p)}
<h2>Inputs</h2>{_data_rows(p.inputs, "inputs")}
<h2>Output</h2>{_data_rows([p.output], "output")}
<h2>Parent BOMs</h2>{_bom_refs(p.parents, "parents", "none: built on no other run")}
<h2>Runs built on this one</h2>{_bom_refs(p.children, "children", "none on this node")}
<h2>Verifications</h2>{_verifications_html(p)}
<h2>Lineage</h2>{_graph_html(p.lineage, p.issuers, own_did)}
<p><a href="/lineage/{e(p.cid)}">lineage page</a></p>
<h2>Run</h2>{_invoice_html(p)}
<h2>Log</h2>{_log_html(p.log)}"""
    label = p.function.name or "BOM"
    return page(f"{label} {short_cid(p.cid)}", body, own_did)


def lineage_html(p: LineagePage, own_did: str) -> str:
    """The lineage page of a BOM or data."""
    root = p.lineage.nodes.get(p.root)
    kind = root.kind if root else "data"
    body = f"""<h1>Lineage of {e(kind)} {link(p.root, kind, full=True)}</h1>
{_graph_html(p.lineage, p.issuers, own_did)}
<p class="muted">As JSON: <code>curl {e("/lineage/" + str(p.root))}</code> (any Accept but text/html).</p>"""
    return page(f"lineage {short_cid(p.root)}", body, own_did)


# -- records and data ----------------------------------------------------------------------

_MAX_ITEMS: Final = 500


def _value(v: Any, depth: int = 0) -> str:
    if depth > 12:
        return '<span class="muted">…</span>'
    if isinstance(v, CID):
        return link(v, full=True)
    if isinstance(v, dict):
        items = list(v.items())
        rows = "".join(
            f"<tr><th>{e(k)}</th><td>{_value(x, depth + 1)}</td></tr>" for k, x in items[:_MAX_ITEMS]
        )
        more = (
            f'<tr><td colspan="2" class="muted">{len(items) - _MAX_ITEMS} more</td></tr>'
            if len(items) > _MAX_ITEMS
            else ""
        )
        return f'<table class="kv">{rows}{more}</table>' if items else "<code>{}</code>"
    if isinstance(v, list):
        cells = "".join(f"<li>{_value(x, depth + 1)}</li>" for x in v[:_MAX_ITEMS])
        more = f'<li class="muted">{len(v) - _MAX_ITEMS} more</li>' if len(v) > _MAX_ITEMS else ""
        return f"<ol start=0>{cells}{more}</ol>" if v else "<code>[]</code>"
    if isinstance(v, bytes):
        shown = v[:64].hex()
        return f"<code>bytes {len(v)}: {e(shown)}{'…' if len(v) > 64 else ''}</code>"
    if isinstance(v, str):
        return f"<pre>{e(v)}</pre>" if "\n" in v or len(v) > 200 else e(v)
    return f"<code>{e(json.dumps(v))}</code>"


def record_html(p: RecordPage, own_did: str) -> str:
    """Any DAG-CBOR block, its links clickable (an Invoice with the start of its log)."""
    kind = p.type or "dag-cbor block"
    log = f"<h2>Log</h2>{_log_html(p.log)}" if p.log is not None else ""
    body = f"""<h1>{e(kind)} <span class="cid">{e(p.cid)}</span></h1>
<p><a href="/ipfs/{e(p.cid)}?format=raw">raw block</a></p>
<div id="record">{_value(p.value)}</div>{log}"""
    return page(f"{kind} {short_cid(p.cid)}", body, own_did)


def _crumbs(p: DataPage) -> str:
    parts = [f'<a href="/ui/ipfs/{e(p.root)}" class="cid">{e(short_cid(p.root))}</a>']
    for i in range(len(p.path)):
        parts.append(f'<a href="{e(data_href(p.root, p.path[: i + 1]))}">{e(p.path[i])}</a>')
    return '<nav class="crumbs" id="crumbs">' + " / ".join(parts) + "</nav>"


def data_href(root: CID, path: Sequence[str]) -> str:
    """The browser URL of ``path`` inside ``root`` (names percent-encoded)."""
    return "/ui/ipfs/" + "/".join([str(root), *(urllib.parse.quote(n, safe="") for n in path)])


def _entries_html(p: DataPage) -> str:
    rows = "".join(
        f'<tr><td><a class="entry" href="{e(data_href(p.root, (*p.path, d.name)))}">{e(d.name)}</a></td>'
        f"<td>{e(d.kind)}</td><td>{e(_size(d.size))}</td><td>{link(d.cid, full=True)}</td></tr>"
        for d in p.entries
    )
    more = '<p class="muted">more entries not listed</p>' if p.more else ""
    head = "<tr><th>name</th><th>kind</th><th>size</th><th>CID</th></tr>"
    return f'<table id="entries">{head}{rows}</table>{more}'


def _file_html(p: DataPage) -> str:
    download = f'<a href="/ui/raw/{e(p.cid)}" id="download">download</a>'
    if p.text is not None:
        return f'<p>{download}</p><pre id="content">{e(p.text)}</pre>'
    why = (
        f"larger than {_size(INLINE_TEXT_BYTES)}: not shown inline"
        if p.preview == "too large"
        else "not UTF-8 text: not shown inline"
    )
    return f'<p class="muted" id="content-note">{e(why)}</p><p>{download}</p>'


def data_html(p: DataPage, own_did: str) -> str:
    """A directory listing, a small text file shown inline, or a file to download."""
    name = p.path[-1] if p.path else str(p.cid)
    made = _bom_list(p.producers)
    used = _bom_list(p.consumers)
    if p.kind == "directory":
        content = _entries_html(p)
    elif p.kind == "symlink":
        content = f'<p>symlink to <code id="content">{e(p.text or "")}</code></p>'
    else:
        content = _file_html(p)
    facts = _kv(
        [
            ("CID", f'<span class="cid" id="data-cid">{e(p.cid)}</span>'),
            ("size", e(_size(p.size))),
            ("made by", made),
            ("used by", used),
            ("lineage", f'<a href="/lineage/{e(p.cid)}">lineage page</a>'),
        ]
    )
    body = f"""{_crumbs(p)}
<h1>{e(p.kind)} <span id="data-name">{e(name)}</span></h1>
{facts}
<h2>Content</h2>{content}"""
    return page(f"{name}", body, own_did)


def _bom_list(boms: Sequence[CID]) -> str:
    if not boms:
        return '<span class="muted">no run on this node</span>'
    return "<br>".join(link(b, "bom", full=True) for b in boms)
