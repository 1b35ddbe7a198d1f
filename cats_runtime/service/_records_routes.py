"""Read-only views of a node's records: Invoices, BOMs, the catalog, the node itself, a small page."""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from .. import __version__
from ..cas import CID, DAG_CBOR, dagcbor_decode, dagjson_encode
from ..errors import InvalidInputError, NotFoundError
from ..operations import verify_bom_signature
from ..records import BOMRecord, InvoiceRecord, decode_record
from ._state import NodeState, node_state

__all__ = ["router"]

router = APIRouter(tags=["records"])


def _record_json(state: NodeState, cid: CID, expected: type[Any], kind: str) -> dict[str, Any]:
    if cid.codec != DAG_CBOR:
        raise NotFoundError(f"expected the CID of a {kind} (dag-cbor), found a {cid.codec_name} CID {cid}")
    data = state.blocks.get(cid)
    record = decode_record(data)
    if not isinstance(record, expected):
        raise NotFoundError(f"expected {cid} to be a {kind}, found a {type(record).__name__}")
    body: dict[str, Any] = {"cid": str(cid), "record": json.loads(dagjson_encode(dagcbor_decode(data)))}
    if isinstance(record, BOMRecord):
        valid = verify_bom_signature(record)
        body["signature"] = "unsigned" if valid is None else ("valid" if valid else "invalid")
        body["issuer"] = record.issuer
    return body


@router.get("/invoices/{cid}", summary="An Invoice as DAG-JSON")
def get_invoice(cid: str, request: Request) -> JSONResponse:
    """The Invoice record stored under ``cid`` (links as ``{"/": cid}``)."""
    return JSONResponse(_record_json(node_state(request), CID.decode(cid), InvoiceRecord, "cats/invoice"))


@router.get("/boms/{cid}", summary="A BOM as DAG-JSON, with its signature checked")
def get_bom(cid: str, request: Request) -> JSONResponse:
    """The BOM record stored under ``cid``; ``signature`` says valid, invalid or unsigned."""
    return JSONResponse(_record_json(node_state(request), CID.decode(cid), BOMRecord, "cats/bom"))


def _query_cid(name: str, value: str | None) -> CID | None:
    if value is None or value == "":
        return None
    try:
        return CID.decode(value)
    except InvalidInputError as exc:
        raise InvalidInputError(f"query parameter {name}: {exc}") from None


@router.get("/catalog", summary="Find BOMs by input, output, function or order")
def get_catalog(
    request: Request,
    input: str | None = None,
    output: str | None = None,
    function: str | None = None,
    order: str | None = None,
    limit: int = 100,
) -> JSONResponse:
    """BOMs matching every given filter (none given: the most recent runs)."""
    if not 1 <= limit <= 1000:
        raise InvalidInputError(f"expected 1 <= limit <= 1000, found {limit}")
    state = node_state(request)
    filters = {
        "input": _query_cid("input", input),
        "output": _query_cid("output", output),
        "function": _query_cid("function", function),
        "order": _query_cid("order", order),
    }
    catalog = state.catalog
    if all(v is None for v in filters.values()):
        rows = catalog.runs(limit)
        return JSONResponse(
            {
                "runs": [
                    {
                        "invoice": str(r.invoice),
                        "order": str(r.order),
                        "status": r.status,
                        "bom": None if r.bom is None else str(r.bom),
                        "function": str(r.function),
                        "function_name": r.function_name,
                        "output": None if r.output is None else str(r.output),
                        "finished_ms": r.finished_ms,
                        "error": r.error,
                    }
                    for r in rows
                ]
            }
        )
    found: set[CID] | None = None
    queries = {
        "input": catalog.boms_for_input,
        "output": catalog.producers,
        "function": catalog.boms_for_function,
        "order": catalog.boms_for_order,
    }
    for name, value in filters.items():
        if value is None:
            continue
        hits = set(queries[name](value))
        found = hits if found is None else found & hits
    boms = sorted(found or set())[:limit]
    return JSONResponse({"boms": [str(b) for b in boms]})


@router.get("/node", summary="This node's identity and version")
def get_node(request: Request) -> JSONResponse:
    """The node's did:key (the issuer of the BOMs it signs), version and limits."""
    state = node_state(request)
    limits = state.config.limits
    return JSONResponse(
        {
            "did": state.identity.did,
            "version": __version__,
            "gateway": "/ipfs/{cid}",
            "limits": {
                "max_car_bytes": limits.max_car_bytes,
                "max_json_bytes": limits.max_json_bytes,
                "max_concurrent_runs": limits.max_concurrent_runs,
                "max_queued_runs": limits.max_queued_runs,
            },
        }
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request) -> HTMLResponse:
    """A small page listing the node's recent runs and BOMs."""
    state = node_state(request)
    rows = state.catalog.runs(50)
    e = html.escape

    def bom_cell(bom: object) -> str:
        return f'<a href="/boms/{e(str(bom))}"><code>{e(str(bom))}</code></a>' if bom else ""

    items = "\n".join(
        f"<tr><td>{e(r.function_name)}</td><td>{e(r.status)}</td><td>{bom_cell(r.bom)}</td>"
        f"<td><code>{e(str(r.output or ''))}</code></td></tr>"
        for r in rows
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CAT Node</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem}} td{{padding:.2rem .6rem}}
code{{font-size:.85em}}</style>
</head><body>
<h1>CAT Node</h1>
<p>Identity <code>{e(state.identity.did)}</code> &middot; CATs {e(__version__)} &middot;
<a href="/openapi.json">OpenAPI</a> &middot; gateway at <code>/ipfs/&lt;cid&gt;</code></p>
<h2>Recent runs</h2>
<table><tr><th>function</th><th>status</th><th>BOM</th><th>output</th></tr>
{items or '<tr><td colspan="4">no runs yet</td></tr>'}
</table></body></html>
"""
    return HTMLResponse(
        page, headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    )
