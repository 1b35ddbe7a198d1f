"""A node process under clients that take too much: slow sockets, many sockets, endless CARs.

Each test starts its own ``cats node serve`` on loopback with small limits, so the limits are
reached in seconds; the defaults are the same code with larger numbers.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from block_faults import tamper
from nodeproc import NodeProcess, prepare_home, start_node

from cats_runtime.cas import CID, DAG_CBOR, RAW, Block, Repo, _dagcbor

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
SLOW = 150  # slow-header sockets, and as many slow-body ones


class Dripper:
    """Sockets that send a request a byte at a time, one byte per socket every ``every`` s,
    and notice when the node closes them."""

    def __init__(self, sockets: list[socket.socket], every: float = 0.5) -> None:
        self.sockets = sockets
        self.closed: dict[int, bytes] = {}  # index -> what the node sent before closing
        self._every = every
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        for i, s in enumerate(sockets):
            s.setblocking(False)
            self._selector.register(s, selectors.EVENT_READ, i)
        self._received: dict[int, bytes] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _close(self, i: int) -> None:
        if i not in self.closed:
            self.closed[i] = self._received.get(i, b"")
            self._selector.unregister(self.sockets[i])

    def _run(self) -> None:
        next_drip = 0.0
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                i = key.data
                try:
                    chunk = self.sockets[i].recv(65536)
                except OSError:
                    chunk = b""
                if chunk:
                    self._received[i] = self._received.get(i, b"") + chunk
                else:
                    self._close(i)
            if time.monotonic() >= next_drip:
                next_drip = time.monotonic() + self._every
                for i, s in enumerate(self.sockets):
                    if i not in self.closed:
                        try:
                            s.send(b"a")  # one more byte of a header value or of the body
                        except OSError:
                            self._close(i)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._selector.close()
        for s in self.sockets:
            s.close()


def _connect(node: NodeProcess, first: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    s.sendall(first)
    return s


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[NodeProcess, str]]:
    home = tmp_path / "node"
    token = prepare_home(home)
    node = start_node(
        home,
        "--header-timeout",
        str(HEADER_TIMEOUT),
        "--body-timeout",
        str(BODY_TIMEOUT),
        "--max-client-connections",
        str(2 * SLOW + 50),
    )
    yield node, token
    node.stop()


def test_slow_headers_and_slow_bodies_are_closed_and_the_node_still_answers(
    guarded: tuple[NodeProcess, str],
) -> None:
    node, token = guarded
    slow_headers = [_connect(node, b"GET /node HTTP/1.1\r\nHost: n\r\nX-Slow: ") for _ in range(SLOW)]
    body_head = (
        f"POST /orders HTTP/1.1\r\nHost: n\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/vnd.ipld.car\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    slow_bodies = [_connect(node, body_head) for _ in range(SLOW)]
    dripper = Dripper(slow_headers + slow_bodies)
    try:
        # While all of them are held, a normal client is served at once.
        started = time.monotonic()
        response = httpx.get(f"{node.url}/node", timeout=10)
        assert response.status_code == 200
        assert time.monotonic() - started < 2.0
        # Every slow socket is closed by the node within its deadline (plus slack for a busy machine),
        # although each keeps sending a byte twice a second.
        deadline = time.monotonic() + BODY_TIMEOUT + 20
        while len(dripper.closed) < 2 * SLOW and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(dripper.closed) == 2 * SLOW, f"{2 * SLOW - len(dripper.closed)} slow sockets still open"
        late_headers = [dripper.closed[i] for i in range(SLOW)]
        assert all(b" 408 " in answer and b'"LimitError"' in answer for answer in late_headers)
        started = time.monotonic()
        assert httpx.get(f"{node.url}/node", timeout=10).status_code == 200
        assert time.monotonic() - started < 2.0
    finally:
        dripper.stop()
    assert node.proc.poll() is None


def _served_again(node: NodeProcess) -> None:
    """Once the held connections close the node serves again (its counts follow closed ones)."""
    deadline = time.monotonic() + 20
    while httpx.get(f"{node.url}/node", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the node still refuses after the connections closed"
        time.sleep(0.2)


def test_one_client_cannot_take_every_connection(tmp_path: Path) -> None:
    node = start_node(tmp_path / "node", "--max-client-connections", "20", "--header-timeout", "60")
    try:  # the node is stopped whatever fails
        limits = httpx.get(f"{node.url}/node", timeout=10).json()["limits"]
        assert (limits["max_client_connections"], limits["header_timeout"]) == (20, 60.0)
        held = [_connect(node, b"GET /node HTTP/1.1\r\nHost: n\r\n") for _ in range(20)]
        try:
            refused = httpx.get(f"{node.url}/node", timeout=10)
            assert refused.status_code == 503
            assert refused.json()["error"] == "LimitError"
            assert "at most 20 open connections from one client" in refused.json()["message"]
        finally:
            for s in held:
                s.close()
        _served_again(node)  # once the client lets go
    finally:
        node.stop()


def _diamonds(home: Path, levels: int, leaf_bytes: int) -> CID:
    """A DAG of stacked diamonds in ``home``'s store: 2**levels paths to one leaf of ``leaf_bytes``."""
    blocks = Repo.open(home).blocks
    below = Block.encode(os.urandom(leaf_bytes), RAW)
    blocks.put(below)
    for level in range(levels):
        below = Block.encode(_dagcbor.encode({"a": below.cid, "b": below.cid, "level": level}), DAG_CBOR)
        blocks.put(below)
    return below.cid


def test_a_dups_car_is_cut_at_the_byte_cap(tmp_path: Path) -> None:
    home = tmp_path / "node"
    root = _diamonds(home, levels=16, leaf_bytes=64 * 1024)  # 4 GiB with every repeat
    node = start_node(home, "--max-car-response-mib", "1")
    try:
        url = f"{node.url}/ipfs/{root}?format=car&car-dups=y"
        received = 0
        started = time.monotonic()
        with httpx.stream("GET", url, timeout=30) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                received += len(chunk)
                assert received <= 1 << 20, f"the CAR went past the 1 MiB cap ({received} bytes so far)"
                assert time.monotonic() - started < 60
        assert received > (1 << 20) - 80 * 1024  # cut at the cap, not long before it
        # Without dups the DAG (17 blocks, ~64 KiB) is far below the cap and comes whole.
        whole = httpx.get(f"{node.url}/ipfs/{root}?format=car", timeout=30)
        assert whole.status_code == 200 and 64 * 1024 < len(whole.content) < 80 * 1024
    finally:
        node.stop()


def test_every_error_has_the_one_shape(tmp_path: Path) -> None:
    home = tmp_path / "node"
    block = Block.encode(_dagcbor.encode({"type": "cats/bom@1", "note": "soon corrupt"}), DAG_CBOR)
    repo = Repo.open(home)
    repo.blocks.put(block)
    tamper(repo.blocks, block.cid, b"\xa1anot the bytes of its CID")  # the node's own store is now wrong
    node = start_node(home)
    try:
        cases = [
            ("GET", "/no/such/route", 404, "NotFoundError"),
            ("PUT", "/ipfs/bafkqaaa", 405, "MethodNotAllowedError"),
            ("DELETE", "/orders", 405, "MethodNotAllowedError"),
            ("GET", "/catalog?limit=many", 400, "InvalidInputError"),
            ("GET", f"/boms/{block.cid}", 500, "CorruptBlockError"),
        ]
        for method, target, status, error in cases:
            response = httpx.request(method, f"{node.url}{target}", timeout=30)
            answer = (response.status_code, response.headers["content-type"])
            assert answer == (status, "application/json"), target
            body = response.json()
            assert set(body) == {"error", "message"}, (target, body)
            assert body["error"] == error, (target, body)
            assert str(home) not in body["message"]
        allow = httpx.put(f"{node.url}/ipfs/bafkqaaa", timeout=30).headers["allow"]
        assert {m.strip() for m in allow.split(",")} == {"GET", "HEAD"}
        message = httpx.get(f"{node.url}/catalog?limit=many", timeout=30).json()["message"]
        assert "'limit'" in message and "'many'" in message
    finally:
        node.stop()


def test_past_max_connections_the_answer_is_the_error_json(tmp_path: Path) -> None:
    # The per-client cap is above the global one, so the global cap is what refuses here.
    caps = ("--max-connections", "8", "--max-client-connections", "50")
    node = start_node(tmp_path / "node", *caps, "--header-timeout", "60")
    try:
        held = [_connect(node, b"GET /node HTTP/1.1\r\nHost: n\r\n") for _ in range(8)]
        try:
            refused = httpx.get(f"{node.url}/node", timeout=10)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/json"
            assert refused.json() == {
                "error": "LimitError",
                "message": "expected at most 8 open connections, found more: retry later",
            }
        finally:
            for s in held:
                s.close()
        _served_again(node)
    finally:
        node.stop()
