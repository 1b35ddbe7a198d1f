"""The HTTP protocol ``cats node serve`` runs: uvicorn's httptools protocol with client deadlines.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and answers 503 past
``limit_concurrency``, but it gives a client as long as it likes to send its headers and its
body, and any number of connections: a few hundred sockets dripping a byte now and then
(slowloris) hold the server's connections for ever. :class:`GuardedProtocol` adds what is
missing, per connection:

* a **header deadline** (:attr:`Limits.header_timeout`): from the connection's start, or from
  the first byte of a keep-alive connection's next request, to the end of the headers; a client
  that misses it is answered 408 and closed;
* a **body deadline** (:attr:`Limits.body_timeout`): from the end of the headers to the end of
  the body; a client that misses it is closed (the route sees a disconnect);
* a **cap per client address** (:attr:`Limits.max_client_connections`): one more connection is
  answered 503 and closed at once, so one client cannot take every connection;
* the **cap on all connections** (:attr:`Limits.max_connections`) answered the same way, with
  the node's error JSON. uvicorn's own ``limit_concurrency`` answers a plain-text 503 instead,
  so it is switched off in this protocol (the cap on connections also bounds requests in
  progress: HTTP/1.1 serves one request per connection at a time).

The limits come from the node configuration in ``$CATS_NODE_CONFIG``, the same JSON the app
factory reads (uvicorn builds this protocol by import string, so the CLI never imports the
service layer). ``cats node serve`` names it with ``http=PROTOCOL``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from functools import cache
from typing import Any, ClassVar, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._limits import Limits

__all__ = ["PROTOCOL", "GuardedProtocol"]

log = logging.getLogger(__name__)

PROTOCOL: Final = "cats_runtime.service._server:GuardedProtocol"
"""The import string of :class:`GuardedProtocol`, for ``uvicorn.Config(http=...)``."""

_CONFIG_ENV: Final = "CATS_NODE_CONFIG"  # as _app.CONFIG_ENV (importing _app here would be a cycle)


@cache
def _limits() -> Limits:
    """The node's limits, read once per process (the defaults when no configuration is set)."""
    text = os.environ.get(_CONFIG_ENV)
    doc = json.loads(text).get("limits", {}) if text else {}
    return Limits(**doc)


def _answer(status: int, reason: str, error: str, message: str) -> bytes:
    """A complete HTTP/1.1 response with the node's error JSON, closing the connection."""
    body = json.dumps({"error": error, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\nx-content-type-options: nosniff\r\n\r\n"
    )
    return head.encode() + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a per-client cap."""

    _open: ClassVar[Counter[str]] = Counter()  # open connections per client address, in this process

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = _limits()
        self.limit_concurrency = None  # see the module docstring: connection_made enforces it
        self._deadline: asyncio.TimerHandle | None = None
        self._address: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        self._address = address
        self._open[address] += 1
        if self._open[address] > self._limits.max_client_connections:
            log.warning("refused a connection from %s: %d open already", address, self._open[address] - 1)
            self._refuse(
                f"expected at most {self._limits.max_client_connections} open connections from "
                "one client, found more: close some and retry"
            )
            return
        if len(self.connections) > self._limits.max_connections:  # this one is counted already
            log.warning("refused a connection from %s: %d open already", address, len(self.connections) - 1)
            self._refuse(
                f"expected at most {self._limits.max_connections} open connections, found more: retry later"
            )
            return
        # A connection that never sends a byte must not stay open either.
        self._arm(self._limits.header_timeout, self._headers_late)

    def _refuse(self, message: str) -> None:
        self.transport.write(_answer(503, "Service Unavailable", "LimitError", message))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._address is not None:
            self._open[self._address] -= 1
            if self._open[self._address] <= 0:
                del self._open[self._address]
            self._address = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request of a keep-alive connection
            self._arm(self._limits.header_timeout, self._headers_late)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if self._has_body():
            self._arm(self._limits.body_timeout, self._body_late)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"", b"0")
            if name == b"transfer-encoding":
                return True
        return False

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.transport.write(
            _answer(
                408,
                "Request Timeout",
                "LimitError",
                f"expected the request headers within {self._limits.header_timeout:g} s, "
                "found them incomplete",
            )
        )
        self.transport.close()

    def _body_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            late = self._limits.body_timeout
            log.info("closed a connection from %s: its body took longer than %g s", self._address, late)
            self.transport.close()
