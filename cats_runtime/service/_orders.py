"""``POST /orders`` and ``GET /orders/{id}``: authenticated Order submission and run status.

Checks, in this order, each failing with its own status: bearer token (401), free run slot
(429, checked again at enqueue time), body type (415) and size (413, counted while streaming),
the Order and Function records (400), the allow-list (403), completeness of the submitted DAG
(400). Only then is the run recorded and queued (202 + ``Location: /orders/{id}``).

An Order by CID with ``"from"`` is different: the gateway must be registered for the submitting
organization (or node-wide, 403 otherwise); the run is recorded at once as ``fetching`` (202)
and handed to the node's fetch pool (:mod:`._fetches`), which reads the Order and Function,
checks them, fetches the rest within one deadline and the CAR byte budget, and only then queues
the run. Every failure of that fetch is a ``failed`` run; what the submitter reads of a
transport failure is one generic message, the detail goes to the node's log.

Nothing from a request names a file: CAR bodies are spooled to an anonymous temporary file
inside ``<home>/node/incoming``, blocks are stored under their CIDs, and the run executes the
Function with the embedded executor (no shell, ever).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final

import httpx
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..cas import (
    CID,
    DAG_CBOR,
    BlockSource,
    CarFileSource,
    Deadline,
    Destination,
    PeerGuard,
    read_car,
    strip_credentials,
)
from ..cas._gateway import GatewayBlockSource
from ..cas._walk import reachable
from ..errors import (
    AuthError,
    BlockNotFoundError,
    DecodeError,
    InvalidInputError,
    UnsupportedCodecError,
)
from ..operations import (
    Endorsement,
    Node,
    check_parents,
    fetch_order,
    index_records,
    load_order,
    run_order,
)
from ..records import FunctionRecord, InvoiceRecord, OrderRecord
from ._auth import authenticate
from ._errors import redact_home
from ._fetches import failure_reason
from ._limits import read_body, spool_body
from ._runs import RunInfo, RunResult
from ._state import NodeState, node_state

__all__ = ["execute_run", "router", "settle_from_catalog"]

CAR_TYPE: Final = "application/vnd.ipld.car"
JSON_TYPE: Final = "application/json"
_RUN_ID_CHARS: Final = frozenset("0123456789abcdef")
OPERATOR_ORG: Final = "operator"
"""The organization of ``cats node serve --operator-token``: the node's own operator, trusted."""

log = logging.getLogger(__name__)

router = APIRouter(tags=["orders"])

_ORDER_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            CAR_TYPE: {
                "schema": {"type": "string", "format": "binary"},
                "description": "A CARv1 whose single root is the Order, holding the Order, Function, "
                "Structure and input DAGs. Endorsements of the Function go in X-Cats-Endorsement headers.",
            },
            JSON_TYPE: {
                "schema": {
                    "type": "object",
                    "required": ["order"],
                    "additionalProperties": False,
                    "properties": {
                        "order": {"type": "string", "description": "The Order CID"},
                        "from": {
                            "type": "string",
                            "description": "Gateway URL to fetch the Order's blocks from",
                        },
                        "endorsements": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "'<did:key>.<base64url signature>' of the Function CID",
                        },
                    },
                },
            },
        },
    },
    "parameters": [
        {
            "name": "X-Cats-Endorsement",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "An endorsement of the Function (or of its code, any entrypoint)",
        }
    ],
}


def _endorsements(request: Request, extra: Sequence[Any] = ()) -> list[Endorsement]:
    texts = [*request.headers.getlist("x-cats-endorsement"), *extra]
    if len(texts) > 16:
        raise InvalidInputError(f"expected at most 16 endorsements, found {len(texts)}")
    out: list[Endorsement] = []
    for text in texts:
        if not isinstance(text, str):
            raise InvalidInputError(f"expected endorsements as strings, found {type(text).__name__}")
        out.append(Endorsement.parse(text))
    return out


def _run_json(request: Request, run: RunInfo) -> dict[str, Any]:
    body = run.to_json()
    if run.error is not None:
        body["error"] = redact_home(request, run.error)
    return body


def _registered_gateway(state: NodeState, org: str, source: str) -> Destination:
    """The registration that lets ``org`` name ``source`` in ``"from"``.

    Raises:
        AuthError: The gateway is registered neither for ``org`` nor node-wide.
    """
    found = state.tokens.gateway_for(org, source)
    if found is None:
        wanted = Destination.parse(source)
        found = next(
            (g for g in map(Destination.parse, state.config.gateways) if g.same_origin(wanted)), None
        )
    if found is None:
        raise AuthError(
            f"expected 'from' to name a gateway registered for organization {org!r} on this node "
            "(cats node token gateway ORG URL) or on its node-wide list, found one that is not"
        )
    return found


def _fetch_job(
    state: NodeState, run: RunInfo, gateway: Destination, endorsements: list[Endorsement]
) -> Callable[[], None]:
    """The fetch-pool job of a run submitted with ``"from"``: fetch, check, then queue or fail it."""

    def job() -> None:
        nonlocal run
        limits = state.config.fetch
        with Deadline(limits.deadline_s) as deadline:
            try:
                # The fetch starts now, not when it was queued: started..finished is its own time.
                run = replace(run, started_ms=time.time_ns() // 1_000_000)
                state.runs.store.update(run)
                allowed_by = _fetch_for_submitter(state, run, PeerGuard(gateway, deadline), endorsements)
                state.runs.release(replace(run, allowed_by=allowed_by))
            except Exception as exc:  # every way it fails ends the run (and frees its slot)
                passed = deadline.expired
                log.warning(
                    "run %s of organization %s: fetching Order %s from %s failed%s: %s: %s",
                    run.id,
                    run.org,
                    run.order,
                    gateway.url,
                    " (deadline passed)" if passed else "",
                    type(exc).__name__,
                    exc,
                )
                state.runs.abandon(run, failure_reason(exc, passed, limits.deadline_s))

    return job


def _fetch_for_submitter(
    state: NodeState, run: RunInfo, guard: PeerGuard, endorsements: list[Endorsement]
) -> str:
    """Read the Order and Function from the gateway (in memory), check them, fetch the rest.

    Code the node refuses never enters its store; the fetch is bounded by the guard's deadline
    and, like a CAR body, by the node's byte budget, so fetching for a submitter cannot fill
    the disk.
    """
    limits = state.config.fetch
    url = guard.destination.url
    with guard.client(timeout=limits.read_timeout_s) as http:
        order, function = load_order(GatewayBlockSource(url, http, timeout=limits.read_timeout_s), run.order)
    _check_network(state, function, order.function)
    allowed_by = state.allow.check(order.function, function.code, endorsements)
    fetch_order(
        state.home,
        run.order,
        [url],
        timeout=limits.read_timeout_s,
        max_bytes=state.config.limits.max_car_bytes,
        guard=guard,
    )
    guard.deadline.check(f"fetching Order {run.order}")
    return allowed_by


def _gateway_url(source: object) -> str:
    """``source`` if it is an http(s) URL the gateway client can use (checked before the 202)."""
    if not isinstance(source, str) or not source.startswith(("http://", "https://")):
        raise InvalidInputError(f"expected 'from' to be an http(s) gateway URL, found {source!r:.200}")
    try:
        # Both parsers the fetch uses (httpx for blocks, urlsplit for CARs) must accept it.
        host = httpx.URL(source).host
        urllib.parse.urlsplit(source).port  # noqa: B018 -- the port is parsed (and checked) lazily
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidInputError(
            f"expected 'from' to be a valid gateway URL, found {source!r:.200}: {exc}"
        ) from None
    if not host:
        raise InvalidInputError(f"expected 'from' to name a host, found {source!r:.200}")
    return source


def _single_root(roots: Sequence[CID]) -> CID:
    if len(roots) != 1:
        raise InvalidInputError(f"expected a CAR with exactly one root (the Order), found {len(roots)} roots")
    return roots[0]


def _peek_records(path: str) -> tuple[CID, OrderRecord, FunctionRecord]:
    """The Order (the CAR's root) and its Function, read from the spooled CAR before importing it.

    Reading them first means code the node refuses never enters its store.
    """
    with open(path, "rb") as stream:
        reader = read_car(stream)
        root = _single_root(reader.roots)
        order: OrderRecord | None = None
        function_data: dict[CID, bytes] = {}
        for block in reader:
            if block.cid == root:
                order = OrderRecord.decode(block.data)
                if order.function in function_data:
                    break
            elif order is None or block.cid == order.function:
                # Records are small; anything else before the Order is skipped, not kept.
                if block.cid.codec == DAG_CBOR and len(block.data) < 1 << 16 and len(function_data) < 64:
                    function_data[block.cid] = block.data
                if order is not None:
                    break
        if order is None:
            raise InvalidInputError(f"expected the CAR to contain its root Order {root}, found no such block")
        data = function_data.get(order.function)
        if data is None:
            raise InvalidInputError(
                f"expected the CAR to contain the Order's Function {order.function}, found none"
            )
    return root, order, FunctionRecord.decode(data)


def _check_network(state: NodeState, function: FunctionRecord, cid: CID) -> None:
    if function.network and not state.config.sandbox.allow_network:
        raise AuthError(
            f"expected a Function without network access (this node refuses networked code), "
            f"found {cid} declaring network: true"
        )


class _Overlay:
    """A submitted CAR's blocks first, then the node's store: what the Order's DAG is checked on."""

    def __init__(self, car: CarFileSource, store: BlockSource) -> None:
        self.car = car
        self.store = store

    def has(self, cid: CID) -> bool:
        return self.car.has(cid) or self.store.has(cid)

    def get(self, cid: CID) -> bytes:
        return self.car.get(cid) if self.car.has(cid) else self.store.get(cid)


def _check_complete(source: BlockSource, order_cid: CID, order: OrderRecord) -> set[CID]:
    """Every block of the Order's DAG (Function, Structure, inputs, parent BOMs); refuse a gap."""
    try:
        needed = reachable(source, [order_cid])
    except BlockNotFoundError as exc:
        raise InvalidInputError(
            f"expected the Order's Function, Structure, inputs and parent BOMs in full, found: {exc}"
        ) from None
    check_parents(source, order)
    return needed


def _accept_car(
    state: NodeState, path: str, endorsements: list[Endorsement], org: str
) -> tuple[RunInfo, bool]:
    """Check a spooled CAR submission and, once its run slot is reserved, store what it needs.

    The CAR is checked where it lies (indexed, every block verified) and nothing reaches the
    store before the run is accepted; then only the blocks reachable from the Order are stored,
    and the Order is pinned under the run. A refused submission leaves the store as it was, and
    blocks a CAR carries beyond the Order's DAG are never stored (so never served).
    """
    root, order, function = _peek_records(path)
    _check_network(state, function, order.function)
    allowed_by = state.allow.check(order.function, function.code, endorsements)
    with open(path, "rb") as stream:
        car = CarFileSource(stream)
        _single_root(car.roots)
        needed = _check_complete(_Overlay(car, state.blocks), root, order)

        def store(run: RunInfo) -> None:
            # The write lock keeps gc out until the Order is pinned.
            with state.repo.write_lock():
                state.blocks.put_many(car.blocks(c for c in needed if not state.blocks.has(c)))
                state.repo.pins.add(root, name=f"run:{run.id}")

        return state.runs.submit(root, org, allowed_by, None, prepare=store)


@router.post(
    "/orders",
    status_code=202,
    summary="Submit an Order (authenticated)",
    openapi_extra=_ORDER_BODY,
    responses={
        202: {"description": "Accepted: the run is queued; poll Location"},
        400: {"description": "Malformed CAR, record or CID; incomplete DAG"},
        401: {"description": "Missing or unknown bearer token"},
        403: {"description": "The Function is not allowed on this node"},
        413: {"description": "Body larger than the node's limit"},
        415: {"description": "Body is neither a CAR nor JSON"},
        429: {"description": "Run queue full; retry after Retry-After seconds"},
    },
)
async def submit_order(request: Request) -> JSONResponse:
    """Accept an Order with its blocks (CAR body) or by CID with a gateway to fetch it from (JSON)."""
    state = node_state(request)
    org = await run_in_threadpool(authenticate, request, state.tokens)
    refusal = state.config.sandbox.refusal() if org != OPERATOR_ORG else None
    if refusal is not None:
        raise AuthError(refusal)
    state.runs.check_room()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limits = state.config.limits
    source: str | None = None
    gateway: Destination | None = None
    if media == CAR_TYPE:
        endorsements = _endorsements(request)
        incoming = state.home / "node" / "incoming"
        incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, path = tempfile.mkstemp(prefix="order-", suffix=".car", dir=incoming)
        try:
            with os.fdopen(fd, "wb") as spool:
                await spool_body(request, limits.max_car_bytes, "CAR", spool)
            run, new = await run_in_threadpool(_accept_car, state, path, endorsements, org)
        finally:
            os.unlink(path)
    elif media == JSON_TYPE:
        raw = await read_body(request, limits.max_json_bytes, "JSON")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DecodeError(f"expected a JSON object body, found invalid JSON: {exc}") from None
        if (
            not isinstance(doc, dict)
            or not set(doc) <= {"order", "from", "endorsements"}
            or "order" not in doc
        ):
            raise InvalidInputError(
                "expected a JSON object with 'order' and optional 'from', 'endorsements', found "
                + (f"keys {sorted(doc)}" if isinstance(doc, dict) else type(doc).__name__)
            )
        if not isinstance(doc["order"], str):
            raise InvalidInputError("expected 'order' to be a CID string")
        order_cid = CID.decode(doc["order"])
        extra = doc.get("endorsements", [])
        if not isinstance(extra, list):
            raise InvalidInputError("expected 'endorsements' to be a list of strings")
        endorsements = _endorsements(request, extra)
        source = doc.get("from")
        if source is None:
            order, function = await run_in_threadpool(load_order, state.blocks, order_cid)
            _check_network(state, function, order.function)
            allowed_by = state.allow.check(order.function, function.code, endorsements)
            await run_in_threadpool(_check_complete, state.blocks, order_cid, order)
        else:
            gateway = _registered_gateway(state, org, _gateway_url(source))
            # Only this form is ever recorded or shown: no user-info, no secret-looking parameter.
            source = strip_credentials(source)
            allowed_by = "pending: checked once the Order is fetched"
        run, new = state.runs.submit(order_cid, org, allowed_by, source, held=gateway is not None)
        if new and gateway is not None:
            state.fetches.submit(org, _fetch_job(state, run, gateway, endorsements))
    else:
        raise UnsupportedCodecError(
            f"expected Content-Type {CAR_TYPE} or {JSON_TYPE}, found {media or 'none'!r}"
        )
    body = {**_run_json(request, run), "new": new, "location": f"/orders/{run.id}"}
    return JSONResponse(body, status_code=202, headers={"Location": f"/orders/{run.id}"})


@router.get(
    "/orders",
    summary="Recent runs of the caller's organization (authenticated)",
    responses={401: {"description": "Missing or unknown bearer token"}},
)
def list_orders(request: Request, limit: int = 50, status: str | None = None) -> JSONResponse:
    """The newest runs of the caller's organization first (the operator sees every run).

    ``status`` filters: queued, fetching, running, succeeded, failed.
    """
    state = node_state(request)
    org = authenticate(request, state.tokens)
    if not 1 <= limit <= 1000:
        raise InvalidInputError(f"expected 1 <= limit <= 1000, found {limit}")
    if status is not None and status not in ("queued", "fetching", "running", "succeeded", "failed"):
        raise InvalidInputError(f"expected a run status, found {status!r}")
    runs = state.runs.store.recent(limit, status, None if org == OPERATOR_ORG else org)
    return JSONResponse({"runs": [_run_json(request, r) for r in runs]})


@router.get("/orders/{run_id}", summary="Status of one run")
def get_order(run_id: str, request: Request) -> JSONResponse:
    """A run's status; when it is settled, its Invoice, BOM and output CIDs."""
    if not (len(run_id) == 32 and set(run_id) <= _RUN_ID_CHARS):
        raise InvalidInputError(f"expected a run id of 32 hex digits, found {run_id[:40]!r}")
    return JSONResponse(_run_json(request, node_state(request).runs.store.get(run_id)))


# -- execution (called on the run workers) -----------------------------------------------------
def execute_run(state: NodeState) -> Callable[[RunInfo, Callable[[RunInfo], None]], RunResult]:
    """The function the run workers call: run the Order locally (its blocks are local by now)."""

    def execute(run: RunInfo, record: Callable[[RunInfo], None]) -> RunResult:
        if run.order not in state.repo.pins:  # a CAR's Order was pinned as it was stored
            with state.repo.write_lock():
                state.repo.pins.add(run.order, name=f"run:{run.id}")  # its DAG is complete by now
        with Node.open(state.home) as node:
            order = node.load(run.order)
            if not isinstance(order, OrderRecord):
                raise InvalidInputError(f"expected {run.order} to be a cats/order record")
            if run.source is not None:
                check_parents(node.store, order)  # the other forms were checked before the 202
            # The parents' records go into the catalog, so lineage and catalog queries see the
            # runs of the organizations this one builds on.
            for parent in order.parents:
                index_records(state.home, parent)
            outcome = run_order(
                node, order, run.order, address=state.config.ray_address, sandbox=state.config.sandbox
            )
        return RunResult(outcome.status, outcome.invoice, outcome.bom, outcome.output, outcome.error)

    return execute


def settle_from_catalog(state: NodeState) -> Callable[[RunInfo], RunResult | None]:
    """Find the outcome of a run a dead process left unsettled.

    The evidence is an Invoice of its Order that started after the run was submitted (indexed
    means its records were all written).
    """

    def settle(run: RunInfo) -> RunResult | None:
        with Node.open(state.home) as node:
            for invoice_cid in node.catalog.invoices_for_order(run.order):
                invoice = node.load(invoice_cid)
                if isinstance(invoice, InvoiceRecord) and invoice.started_ms >= run.submitted_ms:
                    bom = node.catalog.bom_for_invoice(invoice_cid)
                    return RunResult(invoice.status, invoice_cid, bom, invoice.output, invoice.error)
            # A run that found the Order already done reuses its BOM without a new Invoice.
            if run.status == "running":
                return None
        return None

    return settle
