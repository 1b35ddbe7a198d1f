"""Fetching by CID between real node processes, with a lying peer in the way."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from nodeproc import NodeProcess, cats, make_order_car, prepare_home, start_node, wait_run

from cats_runtime.cas import CID, Block, Repo, add_path, write_car
from cats_runtime.errors import LimitError
from cats_runtime.operations import Node, fetch_from_peers


class _Liar(BaseHTTPRequestHandler):
    """A 'gateway' that answers every request with bytes that do not match the CID asked for."""

    def do_GET(self) -> None:
        cid = CID.decode(self.path.split("/ipfs/")[1].split("?")[0])
        if "format=car" in self.path:
            out = io.BytesIO()
            write_car(out, [cid], [Block.encode(b"an unrelated block")])
            body, ctype = out.getvalue(), "application/vnd.ipld.car; version=1; order=dfs; dups=n"
        else:
            body, ctype = b"definitely not the block", "application/vnd.ipld.raw"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Garbage(_Liar):
    """A 'gateway' whose CARs are not CARs at all (a broken or hostile peer)."""

    def do_GET(self) -> None:
        body = b"\x0a\xa1\x01\x02garbage" + os.urandom(64)
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.ipld.car; version=1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def garbage() -> Iterator[str]:
    server, url = _serve(_Garbage)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def liar() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Liar)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, CID, Path]]:
    base = tmp_path_factory.mktemp("origin")
    data = base / "dataset"
    data.mkdir()
    for i in range(3):
        (data / f"part-{i}.bin").write_bytes(os.urandom(300_000 + i))
    repo = Repo.open(base / "home")
    root = add_path(data, repo.blocks).cid
    repo.pins.add(root)
    node = start_node(base / "home")
    yield node, root, data
    node.stop()


def test_a_lying_peer_is_reported_and_skipped_for_the_car(
    origin: tuple[NodeProcess, CID, Path], liar: str, tmp_path: Path
) -> None:
    node, root, _ = origin
    report = fetch_from_peers(tmp_path / "b", root, [liar, node.url])
    assert report.via == "car"
    assert [f.source for f in report.failures] == [liar]
    assert "not reachable" in report.failures[0].error or "expected" in report.failures[0].error
    assert report.fetched == report.blocks == 3 * 2 + 1 + 3  # 3 files of 2 leaves + root dir + 3 file nodes
    repo = Repo.open(tmp_path / "b")
    assert not repo.blocks.verify()
    assert root in repo.pins


def test_a_peer_sending_garbage_is_skipped(
    origin: tuple[NodeProcess, CID, Path], garbage: str, tmp_path: Path
) -> None:
    node, root, _ = origin
    report = fetch_from_peers(tmp_path / "g", root, [garbage, node.url])
    assert report.via == "car"
    assert [f.source for f in report.failures] == [garbage]
    assert "malformed CAR" in report.failures[0].error
    assert not Repo.open(tmp_path / "g").blocks.verify()


def test_block_by_block_fetch_skips_the_liar_for_every_block(
    origin: tuple[NodeProcess, CID, Path], liar: str, tmp_path: Path
) -> None:
    node, root, data = origin
    home = tmp_path / "c"
    repo = Repo.open(home)
    with httpx.Client() as http:  # have the root locally: the fetch then resumes block by block
        body = http.get(f"{node.url}/ipfs/{root}?format=raw").content
    repo.blocks.put(Block.checked(root, body))
    report = fetch_from_peers(home, root, [liar, node.url], parallelism=4)
    assert report.via == "blocks"
    assert report.fetched == report.blocks - 1
    assert {f.source for f in report.failures} == {f"GatewayBlockSource({liar!r})"}
    assert len(report.failures) == report.fetched  # the liar was asked first for every block
    cats(home, "get", str(root), "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "part-2.bin").read_bytes() == (data / "part-2.bin").read_bytes()


def test_only_liars_means_not_found(origin: tuple[NodeProcess, CID, Path], liar: str, tmp_path: Path) -> None:
    _, root, _ = origin
    from cats_runtime.errors import BlockNotFoundError

    with pytest.raises(BlockNotFoundError, match="failures"):
        fetch_from_peers(tmp_path / "d", root, [liar])
    assert not list(Repo.open(tmp_path / "d").blocks)  # nothing unverified was kept


def test_cats_fetch_cli_names_the_liar(
    origin: tuple[NodeProcess, CID, Path], liar: str, tmp_path: Path
) -> None:
    node, root, _ = origin
    out = cats(tmp_path / "e", "fetch", str(root), "--from", liar, "--from", node.url)
    assert f"skipped {liar}" in out.stdout
    assert "via car" in out.stdout


def test_order_fetched_from_the_submitters_gateway(tmp_path: Path) -> None:
    """Org C serves its Order on its own node; node N is told 'order X, from C' and runs it."""
    client_home = tmp_path / "client"
    order, _, code = make_order_car(client_home, params={"sleep": 0}, seed=3)
    client_node = start_node(client_home)
    # The client's gateway is registered with its token: the runner fetches from nowhere else.
    token = prepare_home(tmp_path / "runner", "client-org", allow=[str(code)], gateways=[client_node.url])
    runner = start_node(tmp_path / "runner")
    try:
        r = httpx.post(
            f"{runner.url}/orders",
            json={"order": str(order), "from": client_node.url},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 202, r.text
        assert r.json()["source"] == client_node.url
        done = wait_run(runner.url, r.json()["run"])
        assert done["status"] == "succeeded", done
        # the output is now served by the runner and fetchable by the client, by CID
        report = fetch_from_peers(client_home, CID.decode(str(done["bom"])), [runner.url])
        assert report.blocks > 0
        with Node.open(client_home) as local:  # the fetched records were indexed
            assert [str(b) for b in local.catalog.boms_for_order(order)] == [done["bom"]]
    finally:
        runner.stop()
        client_node.stop()


def test_a_byte_budget_stops_both_fetch_paths(origin: tuple[NodeProcess, CID, Path], tmp_path: Path) -> None:
    # A node fetching for a remote submitter passes its CAR limit, so nobody can fill its disk.
    node, root, _ = origin
    with pytest.raises(LimitError, match="at most 1000 bytes"):
        fetch_from_peers(tmp_path / "car-path", root, [node.url], max_bytes=1000)
    home = tmp_path / "block-path"
    repo = Repo.open(home)
    with httpx.Client() as http:  # the root is local: the fetch goes block by block
        body = http.get(f"{node.url}/ipfs/{root}?format=raw").content
    repo.blocks.put(Block.checked(root, body))
    with pytest.raises(LimitError, match="at most 1000 fetched bytes"):
        fetch_from_peers(home, root, [node.url], max_bytes=1000)
    assert Repo.open(home).pins.ls() == [], "nothing over budget is pinned"
    whole = fetch_from_peers(tmp_path / "enough", root, [node.url], max_bytes=1 << 30)
    assert whole.fetched_bytes > 1000
