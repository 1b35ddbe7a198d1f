"""Connections a node opens on someone else's behalf: checked destinations and a total deadline.

A node that fetches an Order from the gateway a submitter named must not become that
submitter's proxy into the node's own network (server-side request forgery), nor be held by a
peer that sends one byte every few seconds. Three tools, used together by such fetches:

* :class:`Destination` -- the one origin a fetch may reach. Its host is resolved **once**, every
  address is checked, and the socket connects to a checked address (no second lookup, so a DNS
  answer cannot change between the check and the connect). Loopback, link-local, private,
  shared, multicast and reserved addresses are refused unless the destination was registered
  as allowed to use them (an IP literal is its own explicit registration).
* :class:`Deadline` -- one total deadline for everything a fetch does. A watchdog thread shuts
  down every socket opened under it when it passes, so even a read blocked in a library (a
  buffered read that waits for a full buffer) returns at once; new connections are refused.
* :class:`PeerGuard` -- both together: an ``httpx.Client`` and an :mod:`http.client` connector
  whose every connection goes through the Destination under the Deadline; no proxy from the
  environment, no redirects.

:func:`strip_credentials` removes user-info and secret-looking query parameters from a URL
before it is recorded or logged anywhere.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

from ..errors import InvalidInputError, PeerError

__all__ = ["Deadline", "Destination", "PeerGuard", "strip_credentials"]

log = logging.getLogger(__name__)

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# Query parameter names that carry secrets (matched as parts of the name, case-insensitively).
_SECRET_WORDS: Final = ("key", "token", "secret", "passw", "signature", "auth", "credential", "session")
_SECRET_NAMES: Final = frozenset({"sig", "pwd", "pw", "pass", "jwt", "code"})


def strip_credentials(url: str) -> str:
    """``url`` without user-info, fragment and secret-looking query parameters.

    A parameter is dropped when its name contains ``key``, ``token``, ``secret``, ``passw``,
    ``signature``, ``auth``, ``credential`` or ``session``, or is ``sig``, ``pwd``, ``pw``,
    ``pass``, ``jwt`` or ``code`` (any case): over-stripping costs nothing, a kept secret is a leak.
    A URL that does not parse becomes ``"<unparsable URL>"``.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    kept = [
        (name, value)
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if not _is_secret(name)
    ]
    query = urllib.parse.urlencode(kept)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    words = {w for w in "".join(c if c.isalnum() else " " for c in lowered).split()}
    return any(w in lowered for w in _SECRET_WORDS) or bool(words & _SECRET_NAMES)


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Destination:
    """The one origin (scheme, host, port, path prefix) a guarded fetch may connect to.

    Attributes:
        scheme: ``http`` or ``https``.
        host: A DNS name or an IP literal (IPv6 without brackets), lower case.
        port: The TCP port (the scheme's default when the URL names none).
        path: The path prefix of the gateway, without a trailing ``/`` ("" for the root).
        allow_private: Addresses outside the public internet (loopback, private, link-local...)
            may be used. Always true in effect for an IP literal: naming the address is explicit.
    """

    scheme: str
    host: str
    port: int
    path: str = ""
    allow_private: bool = False

    @classmethod
    def parse(cls, url: str, *, allow_private: bool = False, plain: bool = False) -> Destination:
        """The destination of a gateway URL (user-info, query and fragment are ignored).

        Args:
            url: The URL.
            allow_private: See the attribute.
            plain: Refuse a URL with user-info, a query or a fragment (a registration, which
                must hold nothing secret), instead of ignoring them.

        Raises:
            InvalidInputError: Not an http(s) URL with a host, or a bad port; with ``plain``,
                a URL with credentials, a query or a fragment.
        """
        try:
            parts = urllib.parse.urlsplit(url.strip())
            host = parts.hostname
            port = parts.port
        except ValueError as exc:
            raise InvalidInputError(
                f"expected an http(s) gateway URL, found an unparsable one: {exc}"
            ) from None
        scheme = parts.scheme.lower()
        if plain and (
            "@" in parts.netloc or parts.query or parts.fragment or url.rstrip().endswith(("?", "#"))
        ):
            raise InvalidInputError(
                "expected a gateway URL without credentials, query or fragment, found one with them"
            )
        if scheme not in _DEFAULT_PORTS or not host:
            raise InvalidInputError(
                f"expected an http(s) gateway URL with a host, found {strip_credentials(url)!r:.200}"
            )
        return cls(
            scheme, host.lower(), port or _DEFAULT_PORTS[scheme], parts.path.rstrip("/"), allow_private
        )

    @property
    def url(self) -> str:
        """The gateway's base URL (no credentials, no query)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def same_origin(self, other: Destination) -> bool:
        """True when ``other`` names the same scheme, host, port and path prefix."""
        return (self.scheme, self.host, self.port, self.path) == (
            other.scheme,
            other.host,
            other.port,
            other.path,
        )

    def _literal(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    def addresses(self, deadline: Deadline | None = None) -> list[str]:
        """The checked addresses to connect to, resolved once.

        Args:
            deadline: When given, the lookup gets only the time left: a name server that never
                answers would otherwise hold the fetch for the resolver's own timeouts and retries.

        Raises:
            PeerError: The name does not resolve, or only to addresses this destination may not
                use, or the deadline passed during the lookup.
        """
        literal = self._literal()
        if literal is not None:
            return [str(literal)]  # the address itself was registered: no lookup, nothing to check
        try:
            if deadline is None:
                infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            else:
                infos = _resolve_within(self.host, self.port, deadline)
        except (OSError, UnicodeError) as exc:
            raise PeerError(f"cannot resolve {self.host}: {exc}") from None
        allowed: list[str] = []
        refused: list[str] = []
        for *_, sockaddr in infos:
            text = str(sockaddr[0])
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if self.allow_private or _is_public(address):
                if text not in allowed:
                    allowed.append(text)
            else:
                refused.append(text)
        if not allowed:
            raise PeerError(
                f"refusing to connect to {self.host}: it resolves only to non-public addresses "
                f"{sorted(set(refused))} and it is not registered as allowed to use them"
            )
        return allowed

    def connect(self, host: str, port: int, timeout: float | None, deadline: Deadline) -> socket.socket:
        """A TCP connection to this destination's checked address (``host``/``port`` must be its own).

        Raises:
            PeerError: Another host or port was asked for, no address may be used, the deadline
                passed, or no address accepted the connection.
        """
        if (host.lower().strip("[]"), port) != (self.host, self.port):
            raise PeerError(f"refusing to connect to {host}:{port}: the fetch may only reach {self.url}")
        errors: list[str] = []
        for address in self.addresses(deadline):
            remaining = deadline.remaining()
            if remaining <= 0:
                break
            wait = remaining if timeout is None else min(timeout, remaining)
            try:
                sock = socket.create_connection((address, port), wait)
            except OSError as exc:
                errors.append(f"{address}: {exc}")
                continue
            deadline.watch(sock)
            return sock
        deadline.check(f"connecting to {self.url}")
        raise PeerError(f"cannot connect to {self.url}: {'; '.join(errors) or 'no address'}")


# getaddrinfo cannot be interrupted: a lookup runs in a daemon thread while the fetch waits for
# at most its remaining time. A lookup left behind ends by the resolver's own timeouts; daemon
# threads do not hold up the process's exit, and at most this many lookups run at once.
_RESOLVERS: Final = threading.BoundedSemaphore(8)


def _resolve_within(host: str, port: int, deadline: Deadline) -> list[Any]:
    expired = PeerError(f"resolving {host}: the deadline of {deadline.seconds:g}s passed")
    if not _RESOLVERS.acquire(timeout=max(deadline.remaining(), 0.0)):
        raise expired
    done = threading.Event()
    outcome: list[Any] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the waiting thread below
            outcome.append(exc)
        finally:
            _RESOLVERS.release()
            done.set()

    threading.Thread(target=lookup, name="cats-resolve", daemon=True).start()
    if not done.wait(max(deadline.remaining(), 0.0)):
        raise expired
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]  # type: ignore[no-any-return]


class Deadline:
    """A total time limit for one fetch, enforced on every socket opened under it.

    Args:
        seconds: Time allowed from now.
    """

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise InvalidInputError(f"expected a deadline > 0 seconds, found {seconds}")
        self.seconds: Final = seconds
        self.expires: Final = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        _watchdog().add(self)

    def remaining(self) -> float:
        """Seconds left (0 once passed)."""
        return max(0.0, self.expires - time.monotonic())

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self._expired or time.monotonic() >= self.expires

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it already has)."""
        with self._lock:
            self._sockets.append(sock)
            late = self._expired
        if late:
            _shutdown(sock)

    def check(self, doing: str) -> None:
        """Raise if the deadline has passed.

        Raises:
            PeerError: It has (names what was being done).
        """
        if self.expired:
            raise PeerError(f"{doing}: the deadline of {self.seconds:g}s passed")

    def expire(self) -> None:
        """End it now: every watched socket is shut down, reads blocked on them return."""
        with self._lock:
            self._expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)

    def close(self) -> None:
        """Forget the sockets (the fetch is over); the watchdog drops this deadline when due."""
        with self._lock:
            self._sockets = []

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shutdown(sock: socket.socket) -> None:
    # shutdown (not close) from another thread wakes a recv blocked on the socket; its owner
    # then sees end of stream and closes it. A socket already closed raises: nothing to do.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread that expires deadlines when they are due (a heap, earliest first)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._cond = threading.Condition()
        self._count = 0
        threading.Thread(target=self._run, name="cats-deadlines", daemon=True).start()

    def add(self, deadline: Deadline) -> None:
        with self._cond:
            self._count += 1
            heapq.heappush(self._heap, (deadline.expires, self._count, deadline))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = None if not self._heap else self._heap[0][0] - time.monotonic()
                    self._cond.wait(wait)
                _, _, deadline = heapq.heappop(self._heap)
            deadline.expire()


_WATCHDOG: _Watchdog | None = None
_WATCHDOG_LOCK: Final = threading.Lock()


def _watchdog() -> _Watchdog:
    global _WATCHDOG
    with _WATCHDOG_LOCK:
        if _WATCHDOG is None:
            _WATCHDOG = _Watchdog()
        return _WATCHDOG


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's own socket backend, connecting through a :class:`Destination` under a deadline."""

    def __init__(self, destination: Destination, deadline: Deadline) -> None:
        self._destination = destination
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,  # unused: the guard sets the options
    ) -> httpcore.NetworkStream:
        try:
            sock = self._destination.connect(host, port, timeout, self._deadline)
        except PeerError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # httpcore's own stream over the checked socket; TLS still verifies the certificate
        # against the URL's host name (httpcore passes it as SNI when it starts TLS).
        return SyncStream(sock)


@dataclass(frozen=True)
class PeerGuard:
    """Where a fetch for someone else may connect, and until when.

    Attributes:
        destination: The one origin it may reach.
        deadline: The total time it has.
    """

    destination: Destination
    deadline: Deadline

    def client(self, *, timeout: float, max_connections: int = 8) -> httpx.Client:
        """An ``httpx.Client`` that reaches only the destination, within the deadline.

        Proxies from the environment are ignored (a proxy would resolve names itself),
        redirects are not followed (a redirect is an answer from the peer, not a new
        destination), and every connection goes to an address :meth:`Destination.addresses`
        checked.
        """
        transport = httpx.HTTPTransport(trust_env=False)
        # httpx offers no way to pass a network backend; this is the pool it builds, with the
        # guarded backend (httpcore's extension point for how connections are opened).
        transport._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            network_backend=_GuardedBackend(self.destination, self.deadline),
        )
        return httpx.Client(transport=transport, timeout=timeout, trust_env=False, follow_redirects=False)

    def create_connection(
        self, address: tuple[str, int], timeout: float | None = None, source_address: object = None
    ) -> socket.socket:
        """``socket.create_connection`` through the guard (what :mod:`http.client` calls)."""
        sock = self.destination.connect(address[0], address[1], timeout, self.deadline)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
