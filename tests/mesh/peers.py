"""Hostile and broken gateways for the tests: real HTTP servers on loopback, each on its own thread.

Each binds port 0 itself and reports the port it got (no bind-close-rebind race).
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class HttpPeer:
    """A threaded HTTP server on 127.0.0.1 whose handler is ``behave(handler)``.

    Counts requests and the most handlers active at once.
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.requests = 0
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with peer._lock:
                    peer.requests += 1
                    peer.active += 1
                    peer.most_active = max(peer.most_active, peer.active)
                try:
                    peer.behave(self)
                except OSError:
                    pass  # the client went away: that is what these peers are for
                finally:
                    with peer._lock:
                        peer.active -= 1

            do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def behave(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


class DripPeer(HttpPeer):
    """Answers 200 at once, then sends one byte every ``interval`` seconds, for ever."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        super().__init__()

    def behave(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/vnd.ipld.raw")
        handler.send_header("Content-Length", str(1 << 20))
        handler.end_headers()
        handler.wfile.flush()
        while not self.stopping.wait(self.interval):
            handler.wfile.write(b"x")
            handler.wfile.flush()


class StatusPeer(HttpPeer):
    """Answers every request with ``status`` (and ``Location`` when given), then closes."""

    def __init__(self, status: int, location: str | None = None) -> None:
        self.status = status
        self.location = location
        super().__init__()

    def behave(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(self.status)
        if self.location is not None:
            handler.send_header("Location", self.location)
        handler.send_header("Content-Length", "0")
        handler.send_header("Connection", "close")
        handler.end_headers()


class SilentPeer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte; counts them."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(256)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self.open = 0
        self.most_open = 0
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._reap, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closing:
                    conn.close()
                    return
                self.accepted += 1
                self._held.append(conn)

    def _reap(self) -> None:
        """Track how many connections are still open (a closed one reads as end of stream)."""
        while not self._closing:
            with self._lock:
                alive = []
                for conn in self._held:
                    conn.setblocking(False)
                    try:
                        gone = conn.recv(65536) == b""  # a request is read and ignored
                    except BlockingIOError:
                        gone = False
                    except OSError:
                        gone = True
                    if gone:
                        conn.close()
                    else:
                        alive.append(conn)
                self._held = alive
                self.open = len(alive)
                self.most_open = max(self.most_open, self.open)
            threading.Event().wait(0.05)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            for conn in self._held:
                conn.close()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._sock.close()


@contextlib.contextmanager
def running(*peers: HttpPeer | SilentPeer) -> Iterator[None]:
    """Close every peer at the end, whatever happens."""
    try:
        yield
    finally:
        for peer in peers:
            peer.close()


class ClosedPort:
    """A loopback port bound but not listening: every connection to it is refused."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()


def unused_cid(i: int) -> str:
    """A DAG-CBOR CID nobody holds (an Order CID the hostile gateway will be asked for)."""
    from cats_runtime.cas import CID, DAG_CBOR, dagcbor_encode

    return str(CID.compute(dagcbor_encode({"hostile-peer-test": i}), DAG_CBOR))
