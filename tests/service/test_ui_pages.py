"""The node's web page over real HTTP: a real ``cats node serve`` on a home of hand-built records.

Every record text here is hostile (``ui_homes``): the pages must show it escaped, never as
markup, and carry a CSP that forbids scripts.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from nodeproc import NodeProcess, start_node
from ui_homes import TEXT, XSS_ERROR, XSS_FILE, XSS_LOG, XSS_NAME, XSS_PARAM, UiHome, build_home

from cats_runtime.operations import Lineage, LineageNode
from cats_runtime.service._ui_svg import lineage_svg

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UiHome, NodeProcess]]:
    built = build_home(tmp_path_factory.mktemp("ui"))
    node = start_node(built.home)
    try:
        yield built, node
    finally:
        node.stop()


def _get(node: NodeProcess, path: str, **kw: object) -> httpx.Response:
    return httpx.get(node.url + path, timeout=30, **kw)  # type: ignore[arg-type]


def _assert_safe(text: str) -> None:
    # The only markup is ours: no script element, no inline handler, ever.
    assert "<script" not in text.lower()
    assert not re.search(r"<[^>]*\son[a-z]+=", text, re.IGNORECASE), "an inline event handler leaked"


def _page(node: NodeProcess, path: str, status: int = 200) -> str:
    r = _get(node, path, headers=HTML)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
    _assert_safe(r.text)
    return r.text


def test_runs_page_lists_own_peer_and_failed_runs(served: tuple[UiHome, NodeProcess]) -> None:
    built, node = served
    text = _page(node, "/")
    rows = re.findall(r'<tr class="run" data-status="(\w+)">(.*?)</tr>', text, re.S)
    assert [s for s, _ in rows].count("failed") == 1
    failed = next(body for s, body in rows if s == "failed")
    assert html.escape(XSS_ERROR) in failed
    peer_rows = [body for _, body in rows if f'title="{built.peer_did}"' in body]
    assert peer_rows and all(">peer<" in body for body in peer_rows)
    assert html.escape(XSS_NAME) in peer_rows[0]
    own = next(body for _, body in rows if f"/ui/bom/{built.own_bom}" in body)
    assert f'title="{built.own_did}"' in own and ">this node<" in own
    assert "2026-05-28 20:26:44 UTC" in own  # the Invoice's finish time, in UTC


def test_bom_page_shows_signature_function_data_verifications_lineage_log(
    served: tuple[UiHome, NodeProcess],
) -> None:
    built, node = served
    text = _page(node, f"/ui/bom/{built.peer_bom}")
    assert '<span id="signature"><span class="badge valid">valid</span>' in text
    assert f'{built.peer_did}</code> <span class="badge peer">peer' in text
    assert f'<span id="function-name">{html.escape(XSS_NAME)}</span>' in text
    assert '<code id="entrypoint">fn:main</code>' in text and '<span id="mode">map</span>' in text
    assert f'href="/ui/ipfs/{built.code}"' in text
    assert html.escape(XSS_PARAM.replace('"', '\\"')) in text  # params as JSON, then escaped
    assert '<code id="seed">7</code>' in text
    assert '<span class="badge match">match</span>' in text and f"/ui/record/{built.verification}" in text
    assert f'href="/ui/bom/{built.own_bom}"' in text  # the child run, built on this one
    assert html.escape(XSS_LOG) in text
    svg = text[text.index("<svg") : text.index("</svg>")]
    assert f'data-cid="{built.peer_bom}"' in svg and f'data-cid="{built.own_bom}"' in svg
    assert "did:key:z6Mk" in svg and built.peer_did[-6:] in svg and built.own_did[-6:] in svg
    own = _page(node, f"/ui/bom/{built.own_bom}")
    parents = own[own.index('<ul id="parents">') :]
    assert f'href="/ui/bom/{built.peer_bom}"' in parents[: parents.index("</ul>")]


def test_forged_bom_shows_invalid_signature(served: tuple[UiHome, NodeProcess]) -> None:
    built, node = served
    text = _page(node, f"/ui/bom/{built.forged_bom}")
    assert '<span id="signature"><span class="badge invalid">invalid</span>' in text


def test_directory_listing_and_files(served: tuple[UiHome, NodeProcess]) -> None:
    built, node = served
    root = f"/ui/ipfs/{built.peer_output}"
    listing = _page(node, root)
    names = re.findall(r'<a class="entry" href="([^"]+)">([^<]*)</a>', listing)
    assert [html.unescape(n) for _, n in names] == sorted(
        [XSS_FILE, "big.txt", "blob.bin", "stations.csv", "sub"]
    )
    hostile = next(h for h, n in names if html.unescape(n) == XSS_FILE)
    assert html.unescape(hostile) == f"{root}/{urllib.parse.quote(XSS_FILE, safe='')}"
    assert html.escape("<script>window.pwned=6</script>") in _page(node, html.unescape(hostile))
    assert f'<pre id="content">{html.escape(TEXT)}</pre>' in _page(node, f"{root}/stations.csv")
    assert "not shown inline" in _page(node, f"{root}/big.txt")
    assert "not UTF-8 text" in _page(node, f"{root}/blob.bin")
    assert "nested note" in _page(node, f"{root}/sub/note.txt")
    assert f"/ui/bom/{built.peer_bom}" in listing  # made by
    raw = _get(node, f"/ui/raw/{built.own_output}")
    assert raw.content == b"summary\n" and raw.headers["content-disposition"].startswith("attachment")


def test_records_are_browsable_with_links(served: tuple[UiHome, NodeProcess]) -> None:
    built, node = served
    text = _page(node, f"/ui/record/{built.failed_invoice}")
    assert "cats/invoice@1" in text and html.escape(XSS_ERROR) in text and html.escape(XSS_LOG) in text
    assert re.search(r'href="/ui/record/bafyrei\w+"', text)  # the Order link
    r = _get(node, f"/ui/record/{built.own_bom}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/ui/bom/{built.own_bom}"
    r = _get(node, f"/ui/ipfs/{built.own_bom}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/ui/record/{built.own_bom}"


def test_lineage_route_answers_json_and_html(served: tuple[UiHome, NodeProcess]) -> None:
    built, node = served
    doc = _get(node, f"/lineage/{built.own_bom}").json()
    assert doc["root"] == str(built.own_bom)
    assert doc["issuers"] == {str(built.own_bom): built.own_did, str(built.peer_bom): built.peer_did}
    kinds = {n["cid"]: n["kind"] for n in doc["nodes"]}
    assert kinds[str(built.peer_output)] == "data" and kinds[str(built.peer_bom)] == "bom"
    refused = _get(node, f"/lineage/{built.own_bom}", headers={"Accept": "text/html;q=0, application/json"})
    assert refused.json()["root"] == str(built.own_bom) and refused.headers["vary"] == "Accept"
    text = _page(node, f"/lineage/{built.peer_output}")
    assert "<svg" in text and f'data-cid="{built.own_bom}"' in text


def test_errors_are_pages_with_the_mapped_status(served: tuple[UiHome, NodeProcess]) -> None:
    built, node = served
    assert "expected" in _page(node, "/ui/bom/bafyreinotacid", 400)
    assert "expected an entry &#x27;nope&#x27;" in _page(node, f"/ui/ipfs/{built.peer_output}/nope", 404)
    missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    assert "not found" in _page(node, f"/ui/ipfs/{missing}", 404)
    assert str(built.home) not in _page(node, f"/ui/bom/{missing}", 400)
    assert _get(node, f"/lineage/{missing}").status_code == 404


def test_openapi_has_no_page_routes(served: tuple[UiHome, NodeProcess]) -> None:
    _, node = served
    paths = _get(node, "/openapi.json").json()["paths"]
    assert "/" not in paths and not [p for p in paths if p.startswith("/ui/")]
    assert "/lineage/{cid}" in paths
    ids = [op["operationId"] for p in paths.values() for op in p.values()]
    assert "get_lineage_lineage__cid__get" in ids


def test_svg_layout_survives_a_cycle_and_escapes_labels() -> None:
    data = _cid(b"d")
    bom = _cid(b"b", dag=True)
    g = Lineage(bom, {data: LineageNode(data, "data", "<x>"), bom: LineageNode(bom, "bom", "<b>run</b>")})
    g.edges |= {(data, bom, "in"), (bom, data, "output")}  # an identity run: its output is its input
    svg = lineage_svg(g, {bom: None}, "did:key:zOwn")
    assert "&lt;b&gt;run&lt;/b&gt;" in svg and "<b>" not in svg
    assert svg.count("<rect") == 2


def _cid(data: bytes, dag: bool = False) -> object:
    from cats_runtime.cas import DAG_CBOR, RAW, Block

    return Block.encode(data, DAG_CBOR if dag else RAW).cid
