"""Read-only views of a node's records: Invoices, BOMs, the catalog, the node itself (page: ``_ui``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

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
            "limits": dataclasses.asdict(limits),  # every limit, so clients can stay under them
        }
    )
