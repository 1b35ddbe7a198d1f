"""GatewayBlockSource and ChainedBlockSource against real HTTP servers on loopback.

The peers are small ``http.server`` servers in threads speaking the trustless-gateway protocol
from a MemoryBlockStore: an honest one, a liar that serves wrong bytes, a broken one (HTTP 500),
a slow one. No HTTP mocking: httpx talks to real sockets.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from jsipfs_daemon import Daemon, jsipfs  # noqa: F401  (pytest fixture)

from cats_runtime.cas import _dagcbor
from cats_runtime.cas._car import write_car
from cats_runtime.cas._cid import CID, DAG_CBOR, IDENTITY, RAW, Block
from cats_runtime.cas._gateway import ChainedBlockSource, FetchResult, GatewayBlockSource
from cats_runtime.cas._kubo import KuboClient
from cats_runtime.cas._store import BlockSource, MemoryBlockStore
from cats_runtime.cas._walk import walk
from cats_runtime.errors import BlockNotFoundError, IntegrityError, PeerError


# -- a trustless gateway on loopback ------------------------------------------------------------
@dataclass
class Peer:
    """Behaviour of one test gateway; the handler reads it for every request."""

    store: MemoryBlockStore
    mode: str = "honest"  # honest | liar | broken | slow
    delay: float = 0.0
    hold: threading.Event | None = None  # when set: answer only once the test releases it
    car_blocks: Callable[[CID], list[Block]] | None = None  # override what a CAR request returns
    requests: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _cid(self) -> CID | None:
        path = urlsplit(self.path).path
        if not path.startswith("/ipfs/"):
            return None
        try:
            return CID.decode(path[len("/ipfs/") :])
        except ValueError:
            return None

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        peer = self.server.peer
        cid = self._cid()
        peer.requests.append(f"HEAD {self.path}")
        cached_only = self.headers.get("Cache-Control", "") == "only-if-cached"
        if cid is not None and peer.store.has(cid):
            self._send(200, b"", "application/vnd.ipld.raw")
        else:
            self._send(412 if cached_only else 404, b"", "text/plain")

    def do_GET(self) -> None:
        peer = self.server.peer
        with peer.lock:
            peer.requests.append(f"GET {self.path}")
            peer.in_flight += 1
            peer.max_in_flight = max(peer.max_in_flight, peer.in_flight)
        try:
            self._get(peer)
        finally:
            with peer.lock:
                peer.in_flight -= 1

    def _get(self, peer: Peer) -> None:
        if peer.delay:
            time.sleep(peer.delay)
        if peer.hold is not None:
            peer.hold.wait(60)
        if peer.mode == "broken":
            self._send(500, b"internal failure", "text/plain")
            return
        cid = self._cid()
        query = parse_qs(urlsplit(self.path).query)
        accept = self.headers.get("Accept", "")
        if cid is None:
            self._send(400, b"bad path", "text/plain")
            return
        if query.get("format") == ["car"] or "application/vnd.ipld.car" in accept:
            if not peer.store.has(cid):
                self._send(404, b"not found", "text/plain")
                return
            blocks = peer.car_blocks(cid) if peer.car_blocks else list(walk(peer.store, cid))
            out = io.BytesIO()
            write_car(out, [cid], blocks)
            self._send(200, out.getvalue(), "application/vnd.ipld.car")
            return
        if not peer.store.has(cid):
            self._send(404, b"not found", "text/plain")
            return
        data = peer.store.get(cid)
        if peer.mode == "liar":
            data = b"not the block you asked for: " + data[:8]
        self._send(200, data, "application/vnd.ipld.raw")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, peer: Peer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.peer = peer


@pytest.fixture
def serve() -> Iterator[Callable[[Peer], str]]:
    """Start test gateways on loopback; returns their base URLs."""
    servers: list[_Server] = []

    def start(peer: Peer) -> str:
        server = _Server(peer)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        host, port = server.server_address[:2]
        return f"http://{host!s}:{port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _closed_port_url() -> str:
    server = _Server(Peer(MemoryBlockStore()))
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}"


def _dag(store: MemoryBlockStore, leaves: int = 30, fanout: int = 5) -> tuple[CID, int]:
    """A two-level DAG-CBOR tree over raw leaves; returns (root, number of blocks)."""
    leaf_cids = []
    for i in range(leaves):
        block = Block.encode(f"leaf {i} ".encode() * 20, RAW)
        store.put(block)
        leaf_cids.append(block.cid)
    inner = []
    for i in range(0, leaves, fanout):
        block = Block.encode(_dagcbor.encode({"children": leaf_cids[i : i + fanout]}), DAG_CBOR)
        store.put(block)
        inner.append(block.cid)
    root = Block.encode(_dagcbor.encode({"inner": inner, "name": "root"}), DAG_CBOR)
    store.put(root)
    return root.cid, leaves + len(inner) + 1


@pytest.fixture
def content() -> tuple[MemoryBlockStore, Block]:
    store = MemoryBlockStore()
    block = Block.encode(b"hello trustless gateway\n" * 10, RAW)
    store.put(block)
    return store, block


# -- GatewayBlockSource -------------------------------------------------------------------------
def test_get_returns_verified_block(
    serve: Callable[[Peer], str], content: tuple[MemoryBlockStore, Block]
) -> None:
    store, block = content
    peer = Peer(store)
    with GatewayBlockSource(serve(peer)) as source:
        assert isinstance(source, BlockSource)
        assert source.get(block.cid) == block.data
    (request,) = peer.requests
    assert request == f"GET /ipfs/{block.cid}?format=raw"


def test_get_missing_block_is_not_found(serve: Callable[[Peer], str]) -> None:
    url = serve(Peer(MemoryBlockStore()))
    cid = CID.compute(b"nobody has this")
    with (
        GatewayBlockSource(url) as source,
        pytest.raises(BlockNotFoundError, match=f"{cid} not found at gateway"),
    ):
        source.get(cid)


def test_lying_peer_raises_integrity_error_naming_it(
    serve: Callable[[Peer], str], content: tuple[MemoryBlockStore, Block]
) -> None:
    store, block = content
    url = serve(Peer(store, mode="liar"))
    with GatewayBlockSource(url) as source, pytest.raises(IntegrityError, match=f"from gateway {url}"):
        source.get(block.cid)


def test_broken_peer_raises_peer_error(
    serve: Callable[[Peer], str], content: tuple[MemoryBlockStore, Block]
) -> None:
    store, block = content
    url = serve(Peer(store, mode="broken"))
    with GatewayBlockSource(url) as source, pytest.raises(PeerError, match="HTTP 500, expected 200") as info:
        source.get(block.cid)
    # What the peer said is not relayed (a node fetching for a submitter must not read back pages).
    assert "internal failure" not in str(info.value)


def test_oversized_answer_is_cut_off(serve: Callable[[Peer], str]) -> None:
    store = MemoryBlockStore()
    block = Block.encode(b"x" * 5000, RAW)
    store.put(block)
    with (
        GatewayBlockSource(serve(Peer(store)), max_block_size=1024) as source,
        pytest.raises(PeerError, match="more than 1024 bytes"),
    ):
        source.get(block.cid)


def test_unreachable_and_slow_peers_are_peer_errors(
    serve: Callable[[Peer], str], content: tuple[MemoryBlockStore, Block]
) -> None:
    store, block = content
    with (
        GatewayBlockSource(_closed_port_url()) as source,
        pytest.raises(PeerError, match="cannot fetch block"),
    ):
        source.get(block.cid)
    # The peer holds its answer until released: the client must give up on its own deadline,
    # so the request is still in flight at the peer when the error arrives.
    silent = Peer(store, hold=threading.Event())
    try:
        with (
            GatewayBlockSource(serve(silent), timeout=0.3) as source,
            pytest.raises(PeerError, match=r"within 0.3s"),
        ):
            source.get(block.cid)
        assert silent.in_flight == 1 and silent.requests, "the client gave up before the peer answered"
    finally:
        silent.hold.set()  # type: ignore[union-attr]


def test_has_asks_only_if_cached(
    serve: Callable[[Peer], str], content: tuple[MemoryBlockStore, Block]
) -> None:
    store, block = content
    with GatewayBlockSource(serve(Peer(store))) as source:
        assert source.has(block.cid)
        assert not source.has(CID.compute(b"absent"))
    with GatewayBlockSource(_closed_port_url()) as source:
        assert not source.has(block.cid)


def test_identity_cids_need_no_request() -> None:
    cid = CID(1, RAW, IDENTITY, b"inline")
    with GatewayBlockSource(_closed_port_url()) as source:
        assert source.get(cid) == b"inline"
        assert source.has(cid)


def test_rejects_non_http_url() -> None:
    with pytest.raises(ValueError, match="expected an http"):
        GatewayBlockSource("ftp://example.org")


def test_shared_client_is_not_closed(
    serve: Callable[[Peer], str], content: tuple[MemoryBlockStore, Block]
) -> None:
    store, block = content
    with httpx.Client(timeout=5) as http:
        with GatewayBlockSource(serve(Peer(store)), http) as source:
            source.get(block.cid)
        assert not http.is_closed


# -- fetch_car ------------------------------------------------------------------------------------
def test_fetch_car_streams_verified_dag(serve: Callable[[Peer], str]) -> None:
    store = MemoryBlockStore()
    root, count = _dag(store)
    peer = Peer(store)
    with GatewayBlockSource(serve(peer)) as source:
        blocks = list(source.fetch_car(root))
    assert blocks[0].cid == root
    assert len(blocks) == count
    assert {b.cid for b in blocks} == set(store)
    assert peer.requests == [f"GET /ipfs/{root}?format=car&dag-scope=all"]


def test_fetch_car_rejects_corrupt_block(serve: Callable[[Peer], str]) -> None:
    store = MemoryBlockStore()
    root, _ = _dag(store)

    def corrupt(cid: CID) -> list[Block]:
        blocks = list(walk(store, cid))
        victim = blocks[-1]
        return [*blocks[:-1], Block._trusted(victim.cid, victim.data + b"!")]

    url = serve(Peer(store, car_blocks=corrupt))
    with (
        GatewayBlockSource(url) as source,
        pytest.raises(IntegrityError, match=f"in the CAR from gateway {url}"),
    ):
        list(source.fetch_car(root))


def test_fetch_car_rejects_unrelated_block(serve: Callable[[Peer], str]) -> None:
    store = MemoryBlockStore()
    root, _ = _dag(store)
    stranger = Block.encode(b"an unrelated block smuggled in", RAW)

    def smuggle(cid: CID) -> list[Block]:
        blocks = list(walk(store, cid))
        return [blocks[0], stranger, *blocks[1:]]

    with (
        GatewayBlockSource(serve(Peer(store, car_blocks=smuggle))) as source,
        pytest.raises(PeerError, match=f"sent block {stranger.cid} .* not reachable"),
    ):
        list(source.fetch_car(root))


def test_fetch_car_rejects_incomplete_dag(serve: Callable[[Peer], str]) -> None:
    store = MemoryBlockStore()
    root, _ = _dag(store)
    url = serve(Peer(store, car_blocks=lambda cid: list(walk(store, cid))[:-3]))
    with (
        GatewayBlockSource(url) as source,
        pytest.raises(PeerError, match="with 3 blocks of the DAG missing"),
    ):
        list(source.fetch_car(root))


def test_fetch_car_of_missing_root_is_not_found(serve: Callable[[Peer], str]) -> None:
    cid = CID.compute(b"absent")
    with (
        GatewayBlockSource(serve(Peer(MemoryBlockStore()))) as source,
        pytest.raises(BlockNotFoundError, match=f"DAG {cid} not found"),
    ):
        list(source.fetch_car(cid))


# -- ChainedBlockSource -------------------------------------------------------------------------
def test_chain_skips_bad_peers_and_keeps_the_block(
    serve: Callable[[Peer], str], content: tuple[MemoryBlockStore, Block], caplog: pytest.LogCaptureFixture
) -> None:
    store, block = content
    liar, broken, honest = Peer(store, mode="liar"), Peer(store, mode="broken"), Peer(store)
    empty = Peer(MemoryBlockStore())
    sources = [GatewayBlockSource(serve(p)) for p in (empty, liar, broken, honest)]
    local = MemoryBlockStore()
    chain = ChainedBlockSource(local, sources)
    assert isinstance(chain, BlockSource)
    assert not chain.has(block.cid)

    assert chain.get(block.cid) == block.data
    assert local.has(block.cid) and chain.has(block.cid)
    failures = chain.failures
    assert [f.source for f in failures] == [repr(sources[1]), repr(sources[2])]
    assert isinstance(failures[0].error, IntegrityError)
    assert isinstance(failures[1].error, PeerError)
    assert all(f.cid == block.cid for f in failures)
    assert "skipping GatewayBlockSource" in caplog.text  # a missing block at `empty` is not a failure
    assert len(failures) == 2

    # Now local: no remote is asked again.
    before = [len(p.requests) for p in (empty, liar, broken, honest)]
    assert chain.get(block.cid) == block.data
    assert [len(p.requests) for p in (empty, liar, broken, honest)] == before
    for source in sources:
        source.close()


def test_chain_not_found_anywhere_lists_failures(
    serve: Callable[[Peer], str], content: tuple[MemoryBlockStore, Block]
) -> None:
    store, block = content
    liar = GatewayBlockSource(serve(Peer(store, mode="liar")))
    chain = ChainedBlockSource(
        MemoryBlockStore(), [liar, GatewayBlockSource(serve(Peer(MemoryBlockStore())))]
    )
    with pytest.raises(BlockNotFoundError, match=r"not found locally nor at .*failures: .*is corrupt"):
        chain.get(block.cid)
    assert len(chain.failures) == 1
    with pytest.raises(BlockNotFoundError, match="nor at no remote"):
        ChainedBlockSource(MemoryBlockStore(), []).get(block.cid)


def test_chain_rechecks_remote_that_does_not_verify(content: tuple[MemoryBlockStore, Block]) -> None:
    _, block = content

    class Careless:
        """A BlockSource that claims to verify but does not."""

        def get(self, cid: CID) -> bytes:
            return b"garbage"

        def has(self, cid: CID) -> bool:
            return True

    local = MemoryBlockStore()
    chain = ChainedBlockSource(local, [Careless()])
    with pytest.raises(BlockNotFoundError, match="is corrupt"):
        chain.get(block.cid)
    assert not local.has(block.cid)


def test_fetch_dag_parallel_then_all_local(serve: Callable[[Peer], str]) -> None:
    remote = MemoryBlockStore()
    root, count = _dag(remote, leaves=40, fanout=8)
    peer = Peer(remote, delay=0.03)
    local = MemoryBlockStore()
    with GatewayBlockSource(serve(peer)) as source:
        chain = ChainedBlockSource(local, [source])
        result = chain.fetch_dag(root, parallelism=8)
        total = sum(len(remote.get(c)) for c in remote)
        assert result == FetchResult(root, count, total, count, total)
        assert set(local) == set(remote)
        assert peer.max_in_flight > 1  # requests really overlapped
        again = chain.fetch_dag(root)
        assert (again.blocks, again.fetched) == (count, 0)
    assert len(peer.requests) == count


def test_fetch_dag_sequential_when_asked(serve: Callable[[Peer], str]) -> None:
    remote = MemoryBlockStore()
    root, count = _dag(remote, leaves=10, fanout=5)
    peer = Peer(remote, delay=0.01)
    with GatewayBlockSource(serve(peer)) as source:
        result = ChainedBlockSource(MemoryBlockStore(), [source]).fetch_dag(root, parallelism=1)
    assert result.fetched == count
    assert peer.max_in_flight == 1
    with pytest.raises(ValueError, match="expected parallelism >= 1, found 0"):
        ChainedBlockSource(MemoryBlockStore(), []).fetch_dag(root, parallelism=0)


def test_fetch_dag_survives_a_liar_and_reports_missing(serve: Callable[[Peer], str]) -> None:
    remote = MemoryBlockStore()
    root, count = _dag(remote, leaves=12, fanout=4)
    liar = GatewayBlockSource(serve(Peer(remote, mode="liar")))
    honest = GatewayBlockSource(serve(Peer(remote)))
    chain = ChainedBlockSource(MemoryBlockStore(), [liar, honest])
    assert chain.fetch_dag(root).fetched == count
    assert len(chain.failures) == count and all(isinstance(f.error, IntegrityError) for f in chain.failures)

    # A DAG with a block nobody has: the error names it, and what was fetched stays local.
    partial = MemoryBlockStore()
    for cid in remote:
        partial.put(Block.checked(cid, remote.get(cid)))
    lost = Block.encode(b"lost leaf", RAW)
    top = Block.encode(_dagcbor.encode({"a": root, "b": lost.cid}), DAG_CBOR)
    partial.put(top)
    local = MemoryBlockStore()
    chain = ChainedBlockSource(local, [GatewayBlockSource(serve(Peer(partial)))])
    with pytest.raises(BlockNotFoundError, match=f"block {lost.cid} not found"):
        chain.fetch_dag(top.cid, parallelism=4)
    assert local.has(top.cid)
    liar.close()
    honest.close()


# -- the js-ipfs daemon's own gateway as a peer ------------------------------------------------
def test_jsipfs_gateway_as_peer(jsipfs: Daemon) -> None:  # noqa: F811
    data = b"served by the js-ipfs gateway\n" * 100
    with KuboClient(jsipfs.api_url, timeout=20) as kubo:
        raw_cid = kubo.add(data).cid  # one chunk, CIDv1: the file is a single raw block
        cbor = Block.encode(_dagcbor.encode({"hello": raw_cid}), DAG_CBOR)
        assert kubo.block_put(cbor.data, codec="dag-cbor") == cbor.cid
    with GatewayBlockSource(jsipfs.gateway_url, timeout=20) as gateway:
        # A raw block reads back whether or not the gateway honours ?format=raw.
        assert gateway.get(raw_cid) == data
        # js-ipfs deviation: its gateway predates the trustless protocol (it ignores ?format=raw and
        # cannot render a dag-cbor node), so blocks that are not raw leaves are refused or fail
        # verification rather than served. The client must never accept such an answer.
        # js-ipfs 0.18.1 answers HTTP 500 for the dag-cbor block (checked: the one error raised).
        with pytest.raises(PeerError, match="HTTP 500"):
            gateway.get(cbor.cid)
