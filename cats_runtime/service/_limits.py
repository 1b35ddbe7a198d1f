"""Size and concurrency limits of a node, and a body reader that enforces them while streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

from starlette.requests import ClientDisconnect, Request

from ..errors import InvalidInputError, TooLargeError

__all__ = ["Limits", "read_body", "spool_body"]

MiB = 1 << 20
_POSITIVE = (
    "max_car_response_bytes",
    "header_timeout",
    "body_timeout",
    "keep_alive_timeout",
    "max_connections",
    "max_client_connections",
)


@dataclass(frozen=True)
class Limits:
    """What one node accepts.

    Attributes:
        max_car_bytes: Largest CAR body of ``POST /orders``.
        max_json_bytes: Largest JSON body.
        max_concurrent_runs: Runs executing at once.
        max_queued_runs: Accepted runs waiting for a free slot; beyond that ``POST /orders``
            answers 429 with ``Retry-After`` (nothing is silently dropped).
        max_car_response_bytes: Most bytes one CAR response of the gateway sends (blocks,
            duplicates included); past it the CAR ends early, as it does for a missing block.
        header_timeout: Seconds a connection may take to send a request's headers (from its
            first byte, or from the connection's start); then it is answered 408 and closed.
        body_timeout: Seconds a request's body may take to arrive once its headers have; then
            the connection is closed.
        keep_alive_timeout: Seconds an idle keep-alive connection is kept open.
        max_connections: Open connections at once (so requests in progress too); one more
            is answered 503 with the error JSON and closed at once.
        max_client_connections: Open connections from one client address; more are answered
            503 and closed at once.
    """

    max_car_bytes: int = 256 * MiB
    max_json_bytes: int = 64 * 1024
    max_concurrent_runs: int = 2
    max_queued_runs: int = 64
    max_car_response_bytes: int = 1024 * MiB
    header_timeout: float = 10.0
    body_timeout: float = 120.0
    keep_alive_timeout: int = 5
    max_connections: int = 1024
    max_client_connections: int = 256

    def __post_init__(self) -> None:
        for name in ("max_car_bytes", "max_json_bytes", "max_concurrent_runs", *_POSITIVE):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"expected {name} > 0, found {getattr(self, name)}")
        if self.max_queued_runs < 0:
            raise InvalidInputError(f"expected max_queued_runs >= 0, found {self.max_queued_runs}")


def _declared_length(request: Request, limit: int, what: str) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise InvalidInputError(f"expected a decimal Content-Length, found {declared[:40]!r}")
    if int(declared) > limit:
        raise TooLargeError(
            f"expected a {what} body of at most {limit} bytes, found Content-Length {declared}"
        )


async def _chunks(request: Request, limit: int, what: str) -> AsyncIterator[bytes]:
    """The body's chunks, failing as soon as more than ``limit`` bytes have arrived."""
    _declared_length(request, limit, what)
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise TooLargeError(f"expected a {what} body of at most {limit} bytes, found more")
            yield chunk
    except ClientDisconnect:
        # The client left, or the server closed it for missing its body deadline: an ordinary
        # end of the request (no traceback in the node's log), answered to nobody.
        raise InvalidInputError(
            f"expected a {what} body, found the connection closed after {total} bytes"
        ) from None


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """Read a small body into memory, refusing it (413) as soon as it exceeds ``limit``."""
    parts = [chunk async for chunk in _chunks(request, limit, what)]
    return b"".join(parts)


async def spool_body(request: Request, limit: int, what: str, out: BinaryIO) -> int:
    """Copy a large body into ``out`` (a temporary file), refusing it (413) past ``limit``."""
    total = 0
    async for chunk in _chunks(request, limit, what):
        out.write(chunk)
        total += len(chunk)
    out.flush()
    return total
