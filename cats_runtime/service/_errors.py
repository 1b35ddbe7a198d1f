"""The one place where library errors become HTTP status codes.

Routes raise :class:`~cats_runtime.errors.CatsError` subclasses and never build error
responses themselves; :func:`status_for` walks :data:`STATUS_CODES` (most specific class
first) and the handler installed by the app answers ``{"error": <class>, "message": <text>}``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from ..errors import (
    AuthError,
    BlockNotFoundError,
    CatsError,
    CorruptBlockError,
    CredentialsError,
    DecodeError,
    ExecutionError,
    IntegrityError,
    InvalidInputError,
    LimitError,
    NotFoundError,
    PeerError,
    PolicyViolationError,
    ProvisionError,
    StoreError,
    TooLargeError,
    UnsupportedCodecError,
    VerificationError,
)

__all__ = [
    "STATUS_CODES",
    "MethodNotAllowedError",
    "NotAcceptableError",
    "cats_error_handler",
    "http_error_handler",
    "redact_home",
    "status_for",
    "validation_error_handler",
]

log = logging.getLogger(__name__)


class NotAcceptableError(InvalidInputError):
    """The request accepts only response variants this node does not produce (HTTP 406)."""


class MethodNotAllowedError(InvalidInputError):
    """The path exists, but not for this HTTP method (HTTP 405, with ``Allow``)."""


STATUS_CODES: Final[tuple[tuple[type[CatsError], int], ...]] = (
    (CredentialsError, 401),  # before AuthError: no or unknown token
    (AuthError, 403),  # known caller, refused (code not allowed)
    (TooLargeError, 413),  # before LimitError
    (LimitError, 429),  # run queue full
    (NotAcceptableError, 406),  # before InvalidInputError
    (MethodNotAllowedError, 405),  # before InvalidInputError
    (UnsupportedCodecError, 415),  # before InvalidInputError
    (InvalidInputError, 400),  # includes InvalidCIDError, UnsafePathError
    (DecodeError, 400),  # a submitted CAR or record that does not parse
    (CorruptBlockError, 500),  # before IntegrityError: the node's own store is wrong, not the client
    (IntegrityError, 400),  # a submitted block whose bytes do not match its CID
    (BlockNotFoundError, 404),
    (NotFoundError, 404),
    (PolicyViolationError, 403),
    (PeerError, 502),  # the submitter's gateway failed us
    (VerificationError, 409),
    (ProvisionError, 502),
    (ExecutionError, 500),
    (StoreError, 500),
    (CatsError, 500),
)
"""CatsError subclass -> HTTP status, most specific first (the first match wins)."""


def status_for(exc: CatsError) -> int:
    """The HTTP status of a library error."""
    for cls, status in STATUS_CODES:
        if isinstance(exc, cls):
            return status
    return 500


def redact_home(request: Request, text: str) -> str:
    """``text`` with the node's home directory replaced by ``<home>``.

    Library messages name files (``block ... not found in /srv/cats/blocks``); clients, who
    need no such detail, must not learn where the node keeps its data.
    """
    home = getattr(getattr(request.app.state, "node", None), "home", None)
    if home is None:
        return text
    # Longest first, and only absolute forms: a relative home such as "node" is also a word.
    forms = {str(home.resolve()), str(home.absolute())}
    for form in sorted(forms, key=len, reverse=True):
        if len(form) > 1:
            text = text.replace(form, "<home>")
    return text


async def cats_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer a :class:`CatsError` with its status and a one-line JSON body."""
    assert isinstance(exc, CatsError)
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    headers = {"WWW-Authenticate": 'Bearer realm="cats-node"'} if status == 401 else None
    if status == 429:
        headers = {"Retry-After": "2"}
    return JSONResponse(
        {"error": type(exc).__name__, "message": redact_home(request, str(exc))},
        status_code=status,
        headers=headers,
    )


# The framework's own errors (no route for the path, a method the route does not take) in the
# node's one error shape, named as the CatsError a route would have raised for them.
_HTTP_ERRORS: Final[dict[int, tuple[str, str]]] = {
    404: (NotFoundError.__name__, "expected a path this node serves (see /openapi.json), found {path}"),
    405: (MethodNotAllowedError.__name__, "expected one of {allow} for {path}, found {method}"),
}


_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")


def _routed(request: Request, method: str) -> bool:
    """Whether some route of the app takes ``method`` for this request's path."""
    scope = {**request.scope, "method": method}
    return any(route.matches(scope)[0] == Match.FULL for route in request.app.routes)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer the framework's HTTP errors (unknown path, wrong method) as ``{"error", "message"}``."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # GET and HEAD are separate routes (unique operationIds), so Starlette's Allow names only
        # the first route that matched the path: gather every route's methods instead.
        allowed = [m for m in _METHODS if _routed(request, m)]
        headers["Allow"] = ", ".join(allowed) or headers.get("Allow", "")
    name, template = _HTTP_ERRORS.get(exc.status_code, ("CatsError", "{detail}"))
    message = template.format(
        path=request.url.path[:200],
        method=request.method,
        allow=headers.get("Allow", "another method"),
        detail=exc.detail,
    )
    return JSONResponse({"error": name, "message": message}, status_code=exc.status_code, headers=headers)


def _where(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ())]
    if location and location[0] in ("query", "path", "header", "body"):
        return f"{location[0]} parameter {'.'.join(location[1:])!r}" if len(location) > 1 else location[0]
    return ".".join(location) or "the request"


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer a request whose parameters do not validate as a 400 ``InvalidInputError``."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {}
    found = first.get("input")
    expected = str(first.get("msg", "valid")).removeprefix("Input should be ")
    message = f"expected {_where(first)} to be {expected}"
    message += f", found {str(found)[:80]!r}" if found is not None else ", found it missing"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return JSONResponse({"error": InvalidInputError.__name__, "message": message}, status_code=400)
