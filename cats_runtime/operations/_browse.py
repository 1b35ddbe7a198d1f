"""What a node's web page shows, gathered from the store and the catalog as typed views.

The service only renders these views: every lookup, every decision ("is this BOM ours?", "is
this file small enough to show?") is made here, so the CLI or any other interface could show
the same data. Nothing here trusts a record's text: names, params and logs are returned as
they are and escaping is the renderer's job.

Views are built from what the node holds. A record or block the node does not have is not
fetched: it shows as missing (``present=False``), because a page view must never make the
node reach out to a peer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ..cas import CID, DAG_CBOR, DAG_PB, RAW, _dagcbor, _unixfs, decode_pbnode, decode_unixfs
from ..errors import BlockNotFoundError, CatsError, InvalidInputError, NotFoundError
from ..records import (
    BOMRecord,
    FunctionRecord,
    InvoiceRecord,
    OrderRecord,
    Record,
    StructureRecord,
    VerificationRecord,
    decode_record,
)
from ._identity import verify_bom_signature
from ._lineage import Lineage, lineage
from ._log import read_log
from ._node import Node

__all__ = [
    "INLINE_TEXT_BYTES",
    "LINEAGE_MAX_NODES",
    "LOG_BYTES",
    "BomPage",
    "BomRef",
    "DataLink",
    "DataPage",
    "FunctionView",
    "InvoiceView",
    "LineagePage",
    "LogView",
    "RecordPage",
    "RunView",
    "Signature",
    "StructureView",
    "Submission",
    "VerificationView",
    "bom_page",
    "data_page",
    "lineage_page",
    "record_page",
    "recent_runs",
]

INLINE_TEXT_BYTES: Final = 64 * 1024
"""Files up to this size that decode as UTF-8 are shown inline on a data page."""
LOG_BYTES: Final = 256 * 1024
"""The first bytes of a run's log shown on its page (the whole log stays one link away)."""
MAX_ENTRIES: Final = 2000
"""Directory entries listed on one page (each costs a block read)."""

Signature = Literal["valid", "invalid", "unsigned"]
Origin = Literal["this node", "peer", "unsigned"]


def _signature(bom: BOMRecord) -> Signature:
    valid = verify_bom_signature(bom)
    return "unsigned" if valid is None else ("valid" if valid else "invalid")


def _origin(issuer: str | None, own_did: str) -> Origin:
    if issuer is None:
        return "unsigned"
    return "this node" if issuer == own_did else "peer"


def _load(node: Node, cid: CID) -> Record | None:
    """The record under ``cid``, or None when the node does not hold it."""
    try:
        record: Record = node.load(cid)
    except BlockNotFoundError:
        return None
    return record


# -- recent runs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """What the node's runs table knows of an Order submitted to it (filled in by the service)."""

    run: str
    order: CID
    org: str
    status: str
    submitted_ms: int
    finished_ms: int | None = None
    invoice: CID | None = None
    bom: CID | None = None
    output: CID | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunView:
    """One run as the runs page lists it.

    Attributes:
        status: ``succeeded``, ``failed``, or a submitted run's ``queued``/``fetching``/``running``.
        time_ms: When it finished (or was submitted, while it has not).
        function: The Function record, when the Order is known.
        function_name: Its name ("" when unknown).
        order: The Order.
        invoice: The Invoice, once the run produced one.
        bom: The BOM of a successful run.
        output: What it produced.
        issuer: The BOM's signer.
        origin: ``this node`` (signed with this node's key, or run here), ``peer`` (signed by
            another node: fetched from it), ``unsigned``.
        org: The organization that submitted it to this node (token holder), or None.
        run: The node's run id, for a submitted run.
        error: Why it failed.
        verdicts: Verdicts of the Verification records about the BOM.
    """

    status: str
    time_ms: int
    function: CID | None
    function_name: str
    order: CID
    invoice: CID | None
    bom: CID | None
    output: CID | None
    issuer: str | None
    origin: Origin
    org: str | None = None
    run: str | None = None
    error: str | None = None
    verdicts: Sequence[str] = ()


def _issuer_of(node: Node, bom: CID | None) -> str | None:
    if bom is None:
        return None
    record = _load(node, bom)
    return record.issuer if isinstance(record, BOMRecord) else None


def _verdicts(node: Node, bom: CID | None) -> list[str]:
    if bom is None:
        return []
    out: list[str] = []
    for cid in node.catalog.verifications_for(bom):
        record = _load(node, cid)
        if isinstance(record, VerificationRecord):
            out.append(record.verdict)
    return out


def _function_of_order(node: Node, order: CID) -> tuple[CID | None, str]:
    record = _load(node, order)
    if not isinstance(record, OrderRecord):
        return None, ""
    fn = _load(node, record.function)
    return record.function, fn.name if isinstance(fn, FunctionRecord) else ""


def recent_runs(
    node: Node, own_did: str, submissions: Sequence[Submission] = (), *, limit: int = 100
) -> list[RunView]:
    """The node's recent runs, newest first: every Invoice it holds, and every submitted run.

    A submitted run and the Invoice it produced are one row (the submitter's organization on
    it); a submitted run that ended before producing an Invoice (its Order could not be
    fetched, say) still has its row, with the error.

    Args:
        node: The node's home.
        own_did: The node's did:key, to tell its own BOMs from ones fetched from peers.
        submissions: Runs from the node's runs table, if it serves.
        limit: At most this many rows.
    """
    by_invoice = {s.invoice: s for s in submissions if s.invoice is not None}
    by_bom = {s.bom: s for s in submissions if s.bom is not None and s.invoice is None}
    rows: list[RunView] = []
    seen: set[str] = set()
    for r in node.catalog.runs(limit):
        sub = by_invoice.get(r.invoice) or (by_bom.get(r.bom) if r.bom is not None else None)
        issuer = _issuer_of(node, r.bom)
        origin: Origin = _origin(issuer, own_did) if r.bom is not None else "this node"
        if sub is not None:
            seen.add(sub.run)
        rows.append(
            RunView(
                r.status,
                r.finished_ms,
                r.function,
                r.function_name,
                r.order,
                r.invoice,
                r.bom,
                r.output,
                issuer,
                origin,
                org=None if sub is None else sub.org,
                run=None if sub is None else sub.run,
                error=r.error,
                verdicts=_verdicts(node, r.bom),
            )
        )
    listed = {row.invoice for row in rows if row.invoice is not None}
    for s in submissions:
        if s.run in seen or (s.invoice is not None and s.invoice in listed):
            continue
        function, name = _function_of_order(node, s.order)
        issuer = _issuer_of(node, s.bom)
        rows.append(
            RunView(
                s.status,
                s.finished_ms or s.submitted_ms,
                function,
                name,
                s.order,
                s.invoice,
                s.bom,
                s.output,
                issuer,
                "this node",
                org=s.org,
                run=s.run,
                error=s.error,
                verdicts=_verdicts(node, s.bom),
            )
        )
    rows.sort(key=lambda v: v.time_ms, reverse=True)
    return rows[:limit]


# -- a BOM ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataLink:
    """A named link to data, with what the node knows of it.

    Attributes:
        name: The input name, entry name or role (``output``).
        cid: The data.
        kind: ``file``, ``directory``, ``symlink``, ``record``, or ``missing`` (not on this node).
        size: Bytes (files), cumulative DAG bytes (directories), or None when unknown.
    """

    name: str
    cid: CID
    kind: str
    size: int | None = None


def _data_link(node: Node, name: str, cid: CID) -> DataLink:
    if cid.codec == DAG_CBOR:
        return DataLink(name, cid, "record")
    try:
        info = _unixfs.stat(node.store, cid)
    except BlockNotFoundError:
        return DataLink(name, cid, "missing")
    except CatsError:
        return DataLink(name, cid, "block")
    return DataLink(name, cid, info.kind, info.size)


@dataclass(frozen=True)
class FunctionView:
    """The Function of a run."""

    cid: CID
    present: bool
    name: str = ""
    code: CID | None = None
    entrypoint: str = ""
    mode: str = ""
    python: str = ""
    requirements: CID | None = None
    image: str | None = None


def _function_view(node: Node, cid: CID) -> FunctionView:
    fn = _load(node, cid)
    if not isinstance(fn, FunctionRecord):
        return FunctionView(cid, False)
    return FunctionView(
        cid, True, fn.name, fn.code, fn.entrypoint, fn.mode, fn.python, fn.requirements, fn.image
    )


@dataclass(frozen=True)
class StructureView:
    """The Structure a run names."""

    cid: CID
    present: bool
    cloud: str = ""
    stack: str = ""
    program: CID | None = None


def _structure_view(node: Node, cid: CID) -> StructureView:
    s = _load(node, cid)
    if not isinstance(s, StructureRecord):
        return StructureView(cid, False)
    return StructureView(cid, True, s.cloud, s.stack, s.program)


@dataclass(frozen=True)
class InvoiceView:
    """What happened when the Order ran."""

    cid: CID
    present: bool
    status: str = ""
    started_ms: int = 0
    finished_ms: int = 0
    executor: Mapping[str, str] = field(default_factory=dict)
    data: int = 0
    failed: int = 0
    memoized: int = 0
    log: CID | None = None
    error: str | None = None


def _invoice_view(node: Node, cid: CID) -> InvoiceView:
    inv = _load(node, cid)
    if not isinstance(inv, InvoiceRecord):
        return InvoiceView(cid, False)
    return InvoiceView(
        cid,
        True,
        inv.status,
        inv.started_ms,
        inv.finished_ms,
        dict(inv.executor),
        len(inv.data),
        sum(1 for d in inv.data if d.status == "failed"),
        sum(1 for d in inv.data if d.memoized),
        inv.log,
        inv.error,
    )


@dataclass(frozen=True)
class LogView:
    """The start of a run's log, decoded leniently (a log is text but may hold anything)."""

    cid: CID | None
    text: str
    truncated: bool
    missing: bool = False


def _log_view(node: Node, cid: CID, log_cid: CID | None) -> LogView:
    if log_cid is None:
        return LogView(None, "", False, missing=True)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in read_log(node, cid):
            chunks.append(chunk)
            size += len(chunk)
            if size > LOG_BYTES:
                break
    except (BlockNotFoundError, NotFoundError):
        return LogView(log_cid, "", False, missing=True)
    data = b"".join(chunks)
    return LogView(log_cid, data[:LOG_BYTES].decode("utf-8", "replace"), size > LOG_BYTES)


@dataclass(frozen=True)
class BomRef:
    """Another BOM (a parent or a child), as far as the node knows it."""

    cid: CID
    present: bool
    function_name: str = ""
    issuer: str | None = None
    origin: Origin = "unsigned"


def _bom_ref(node: Node, cid: CID, own_did: str) -> BomRef:
    b = _load(node, cid)
    if not isinstance(b, BOMRecord):
        return BomRef(cid, False)
    fn = _load(node, b.function)
    name = fn.name if isinstance(fn, FunctionRecord) else ""
    return BomRef(cid, True, name, b.issuer, _origin(b.issuer, own_did))


@dataclass(frozen=True)
class VerificationView:
    """A re-execution of the BOM's Order and its verdict."""

    cid: CID
    verdict: str
    found: CID | None
    differences: Sequence[str]
    invoice: CID
    structure: CID


@dataclass(frozen=True)
class BomPage:
    """Everything the page of one BOM shows.

    Attributes:
        issuers: The signer of every BOM in ``lineage`` (None: unsigned or not on this node),
            so a graph can tell organizations apart.
    """

    cid: CID
    signature: Signature
    issuer: str | None
    origin: Origin
    order: CID
    params: Mapping[str, Any]
    seed: int | None
    function: FunctionView
    structure: StructureView
    inputs: Sequence[DataLink]
    output: DataLink
    parents: Sequence[BomRef]
    children: Sequence[BomRef]
    invoice: InvoiceView
    log: LogView
    verifications: Sequence[VerificationView]
    lineage: Lineage
    issuers: Mapping[CID, str | None]


def _bom(node: Node, cid: CID) -> BOMRecord:
    if cid.codec != DAG_CBOR:
        raise InvalidInputError(
            f"expected the CID of a cats/bom record (dag-cbor), found a {cid.codec_name} CID"
        )
    record = node.load(cid)
    if not isinstance(record, BOMRecord):
        raise InvalidInputError(f"expected {cid} to be a cats/bom record, found a {record.TYPE} record")
    return record


def _issuers(node: Node, graph: Lineage) -> dict[CID, str | None]:
    out: dict[CID, str | None] = {}
    for cid, n in graph.nodes.items():
        if n.kind == "bom":
            out[cid] = _issuer_of(node, cid)
    return out


def _verification_views(node: Node, bom: CID) -> list[VerificationView]:
    out = []
    for cid in node.catalog.verifications_for(bom):
        v = _load(node, cid)
        if isinstance(v, VerificationRecord):
            out.append(VerificationView(cid, v.verdict, v.found, list(v.differences), v.invoice, v.structure))
    return out


def bom_page(node: Node, cid: CID, own_did: str) -> BomPage:
    """Gather the page of the BOM ``cid``.

    Raises:
        BlockNotFoundError: The node does not hold the BOM.
        InvalidInputError: ``cid`` is not a BOM.
    """
    bom = _bom(node, cid)
    order = _load(node, bom.order)
    invoice = _invoice_view(node, bom.invoice)
    graph = lineage(node, cid, max_nodes=LINEAGE_MAX_NODES)
    return BomPage(
        cid=cid,
        signature=_signature(bom),
        issuer=bom.issuer,
        origin=_origin(bom.issuer, own_did),
        order=bom.order,
        params=dict(order.params) if isinstance(order, OrderRecord) else {},
        seed=order.seed if isinstance(order, OrderRecord) else None,
        function=_function_view(node, bom.function),
        structure=_structure_view(node, bom.structure),
        inputs=[_data_link(node, name, data) for name, data in sorted(bom.inputs.items())],
        output=_data_link(node, "output", bom.output),
        parents=[_bom_ref(node, p, own_did) for p in bom.parents],
        children=[_bom_ref(node, c, own_did) for c in node.catalog.children(cid)],
        invoice=invoice,
        log=_log_view(node, cid, invoice.log) if invoice.present else LogView(None, "", False, missing=True),
        verifications=_verification_views(node, cid),
        lineage=graph,
        issuers=_issuers(node, graph),
    )


# -- lineage -------------------------------------------------------------------------------

LINEAGE_MAX_NODES: Final = 500
"""Most nodes of a lineage graph on a page (anonymous requests): past it the graph is ``truncated``."""


@dataclass(frozen=True)
class LineagePage:
    """The lineage graph around a BOM or data, and who signed each BOM in it."""

    root: CID
    lineage: Lineage
    issuers: Mapping[CID, str | None]


def lineage_page(node: Node, cid: CID) -> LineagePage:
    """The lineage of ``cid`` (a BOM or data) with the issuer of each BOM.

    Raises:
        BlockNotFoundError: The node knows nothing of ``cid``.
        InvalidInputError: ``cid`` is a record other than a BOM.
    """
    graph = lineage(node, cid, max_nodes=LINEAGE_MAX_NODES)
    return LineagePage(cid, graph, _issuers(node, graph))


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordPage:
    """A DAG-CBOR block: its decoded value, and the CATs record type when it is one."""

    cid: CID
    value: Any
    type: str | None
    log: LogView | None = None


def record_page(node: Node, cid: CID) -> RecordPage:
    """Decode the DAG-CBOR block ``cid`` for display (an Invoice comes with the start of its log).

    Raises:
        BlockNotFoundError: The node does not hold the block.
        InvalidInputError: ``cid`` is not DAG-CBOR.
    """
    if cid.codec != DAG_CBOR:
        raise InvalidInputError(f"expected a dag-cbor record CID, found a {cid.codec_name} CID {cid}")
    data = node.store.get(cid)
    value = _dagcbor.decode(data)
    kind: str | None = None
    log: LogView | None = None
    try:
        record = decode_record(data)
    except CatsError:
        record = None
    if record is not None:
        kind = record.TYPE
        if isinstance(record, InvoiceRecord):
            log = _log_view(node, cid, record.log)
    return RecordPage(cid, value, kind, log)


# -- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataPage:
    """A UnixFS file, directory or symlink, reached from ``root`` through ``path``.

    Attributes:
        root: The CID the path starts at.
        path: Entry names from ``root`` to this node.
        cid: This node.
        kind: ``file``, ``directory`` or ``symlink``.
        size: File bytes, symlink target length, or cumulative DAG bytes of a directory.
        entries: A directory's entries (at most :data:`MAX_ENTRIES`), sorted by name.
        more: True when the directory has more entries than listed.
        text: A small UTF-8 file's content (or a symlink's target), else None.
        preview: Why ``text`` is None for a file: ``binary`` or ``too large``.
        producers: BOMs whose output this is.
        consumers: BOMs that took this as an input.
    """

    root: CID
    path: tuple[str, ...]
    cid: CID
    kind: str
    size: int
    entries: Sequence[DataLink] = ()
    more: bool = False
    text: str | None = None
    preview: str | None = None
    producers: Sequence[CID] = ()
    consumers: Sequence[CID] = ()


def _resolve(node: Node, root: CID, path: Sequence[str]) -> CID:
    # The gateway's resolver reads one HAMT shard per level, not the whole directory: an anonymous
    # GET of a path in a huge sharded output must cost what the path costs.
    return _unixfs.resolve_path(node.store, root, list(path))[0]


def _preview(node: Node, cid: CID, size: int) -> tuple[str | None, str | None]:
    if size > INLINE_TEXT_BYTES:
        return None, "too large"
    data = b"".join(_unixfs.cat(node.store, cid))
    if b"\x00" in data:
        return None, "binary"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "binary"


def data_page(node: Node, root: CID, path: Sequence[str] = ()) -> DataPage:
    """Gather the page of the UnixFS node at ``root``/``path``.

    Raises:
        BlockNotFoundError: The node does not hold a block on the way.
        NotFoundError: A path entry does not exist.
        InvalidInputError: ``root`` is not UnixFS (a record, say), or the path goes through a file.
    """
    if root.codec not in (DAG_PB, RAW):
        raise InvalidInputError(
            f"expected a UnixFS CID (dag-pb or raw), found a {root.codec_name} CID {root}"
        )
    cid = _resolve(node, root, path)
    info = _unixfs.stat(node.store, cid)
    producers = node.catalog.producers(cid)
    consumers = node.catalog.consumers(cid)
    common: dict[str, Any] = {"producers": producers, "consumers": consumers}
    if info.kind == "directory":
        entries = _unixfs.links(node.store, cid)
        listed = sorted(entries, key=lambda e: e[0].encode("utf-8"))[:MAX_ENTRIES]
        shown = [_data_link(node, name, link.cid) for name, link in listed]
        return DataPage(
            root, tuple(path), cid, "directory", info.size, shown, len(entries) > MAX_ENTRIES, **common
        )
    if info.kind == "symlink":
        target = _symlink_target(node, cid).decode("utf-8", "replace")
        return DataPage(root, tuple(path), cid, "symlink", info.size, text=target, **common)
    text, why = _preview(node, cid, info.size)
    return DataPage(root, tuple(path), cid, "file", info.size, text=text, preview=why, **common)


def _symlink_target(node: Node, cid: CID) -> bytes:
    pb = decode_pbnode(node.store.get(cid))
    return (decode_unixfs(pb.data).data or b"") if pb.data is not None else b""
