"""The node's web page: a browser of its runs, BOMs, lineage and data, served by the node itself.

Routes (none in the OpenAPI schema, except ``/lineage/{cid}`` which also answers JSON):

* ``/`` -- recent runs: this node's, those submitted to it (with the organization), those
  fetched from peers (their issuer), failed ones with their error.
* ``/ui/bom/{cid}`` -- one BOM; ``/ui/record/{cid}`` -- any record, its links clickable.
* ``/ui/ipfs/{cid}[/{path}]`` -- UnixFS directories listed, small text files shown inline;
  ``/ui/raw/{cid}`` -- a file's bytes as a download.
* ``/lineage/{cid}`` -- the lineage graph (HTML for browsers, JSON otherwise).

The pages run no script and load nothing from elsewhere: every response carries a strict
Content-Security-Policy (``default-src 'none'``, the stylesheet from this node only). A page
view only reads what the node holds; it never fetches from a peer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from ..cas import CID, DAG_CBOR, _unixfs
from ..errors import CatsError
from ..operations import (
    Node,
    Submission,
    bom_page,
    data_page,
    lineage_page,
    recent_runs,
    record_page,
)
from . import _ui_render as render
from ._errors import redact_home, status_for
from ._state import NodeState, node_state

__all__ = ["CSP", "router"]

CSP: Final = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""No script at all, the stylesheet from this node only, no framing."""

_HEADERS: Final = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}

router = APIRouter()


def _node(state: NodeState) -> Node:
    # The app's own repository and catalog: a view never opens (or closes) a second catalog.
    return Node(home=state.home, repo=state.repo, catalog=state.catalog)


def _html(request: Request, build: Callable[[NodeState], str]) -> HTMLResponse:
    """Render a page; a library error becomes an error page with the status its type maps to."""
    state = node_state(request)
    try:
        return HTMLResponse(build(state), headers=_HEADERS)
    except CatsError as exc:
        status = status_for(exc)
        text = render.error_html(
            status, type(exc).__name__, redact_home(request, str(exc)), state.identity.did
        )
        return HTMLResponse(text, status_code=status, headers=_HEADERS)


def _submissions(request: Request, state: NodeState) -> list[Submission]:
    return [
        Submission(
            r.id,
            r.order,
            r.org,
            r.status,
            r.submitted_ms,
            r.finished_ms,
            r.invoice,
            r.bom,
            r.output,
            None if r.error is None else redact_home(request, r.error),
        )
        for r in state.runs.store.recent(100)
    ]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request) -> HTMLResponse:
    """Recent runs."""

    def build(state: NodeState) -> str:
        rows = recent_runs(_node(state), state.identity.did, _submissions(request, state), limit=100)
        return render.runs_html(rows, state.identity.did)

    return _html(request, build)


@router.get("/ui/style.css", include_in_schema=False)
def style() -> Response:
    """The pages' stylesheet."""
    return Response(render.STYLE, media_type="text/css", headers={"Cache-Control": "max-age=300"})


@router.get("/ui/bom/{cid}", response_class=HTMLResponse, include_in_schema=False)
def bom(cid: str, request: Request) -> HTMLResponse:
    """One BOM."""

    def build(state: NodeState) -> str:
        return render.bom_html(
            bom_page(_node(state), CID.decode(cid), state.identity.did), state.identity.did
        )

    return _html(request, build)


@router.get("/ui/record/{cid}", response_class=HTMLResponse, include_in_schema=False)
def record(cid: str, request: Request) -> Response:
    """Any DAG-CBOR record (a BOM goes to its own page)."""
    state = node_state(request)
    try:
        parsed = CID.decode(cid)
        if (state.catalog.record_type(parsed) or "").startswith("cats/bom@"):
            return RedirectResponse(f"/ui/bom/{parsed}", status_code=303)
    except CatsError:
        pass  # the page build below reports it
    return _html(
        request, lambda s: render.record_html(record_page(_node(s), CID.decode(cid)), s.identity.did)
    )


def _data(request: Request, cid: str, path: str) -> Response:
    parts = tuple(p for p in path.split("/") if p) if path else ()
    try:
        parsed = CID.decode(cid)
    except CatsError:
        parsed = None
    if parsed is not None and parsed.codec == DAG_CBOR and not parts:
        return RedirectResponse(f"/ui/record/{parsed}", status_code=303)
    return _html(
        request, lambda s: render.data_html(data_page(_node(s), CID.decode(cid), parts), s.identity.did)
    )


@router.get("/ui/ipfs/{cid}", response_class=HTMLResponse, include_in_schema=False)
def data_root(cid: str, request: Request) -> Response:
    """A UnixFS file or directory."""
    return _data(request, cid, "")


@router.get("/ui/ipfs/{cid}/{path:path}", response_class=HTMLResponse, include_in_schema=False)
def data_path(cid: str, path: str, request: Request) -> Response:
    """An entry inside a UnixFS directory, by path."""
    return _data(request, cid, path)


@router.get("/ui/raw/{cid}", include_in_schema=False)
def raw(cid: str, request: Request) -> Response:
    """A UnixFS file's bytes, as a download (never rendered by the browser)."""
    state = node_state(request)
    try:
        parsed = CID.decode(cid)
        chunks: Iterator[bytes] = _unixfs.cat(state.blocks, parsed)
    except CatsError as exc:
        status = status_for(exc)
        text = render.error_html(
            status, type(exc).__name__, redact_home(request, str(exc)), state.identity.did
        )
        return HTMLResponse(text, status_code=status, headers=_HEADERS)
    headers = {
        "Content-Disposition": f'attachment; filename="{parsed}"',
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


def _wants_html(request: Request) -> bool:
    """True when the Accept header names ``text/html`` with a weight above zero (a browser)."""
    for item in request.headers.get("accept", "").split(","):
        media, *params = (p.strip() for p in item.split(";"))
        if media.lower() != "text/html":
            continue
        weight = next((p.partition("=")[2] for p in params if p.lower().startswith("q=")), "1")
        try:
            return float(weight) > 0
        except ValueError:
            return False
    return False


@router.get(
    "/lineage/{cid}",
    tags=["records"],
    summary="The lineage of a BOM or data",
    responses={200: {"content": {"application/json": {}, "text/html": {}}}},
)
def get_lineage(cid: str, request: Request) -> Response:
    """BOMs and data upstream and downstream of ``cid``: JSON, or a drawn graph for a browser.

    ``Accept: text/html`` gets the page; anything else the JSON graph (nodes, edges, issuers).
    """
    if _wants_html(request):
        response = _html(
            request, lambda s: render.lineage_html(lineage_page(_node(s), CID.decode(cid)), s.identity.did)
        )
        response.headers["Vary"] = "Accept"
        return response
    state = node_state(request)
    page = lineage_page(_node(state), CID.decode(cid))
    body = page.lineage.to_json()
    body["issuers"] = {str(k): v for k, v in sorted(page.issuers.items(), key=lambda kv: str(kv[0]))}
    return JSONResponse(body, headers={"Vary": "Accept"})
