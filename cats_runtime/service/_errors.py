"""The one place where library errors become HTTP status codes.

Routes raise :class:`~cats_runtime.errors.CatsError` subclasses and never build error
responses themselves; :func:`status_for` walks :data:`STATUS_CODES` (most specific class
first) and the handler installed by the app answers ``{"error": <class>, "message": <text>}``.
"""

from __future__ import annotations

import logging
from typing import Final

from fastapi import Request
from fastapi.responses import JSONResponse

from ..errors import (
    AuthError,
    BlockNotFoundError,
    CatsError,
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

__all__ = ["STATUS_CODES", "NotAcceptableError", "cats_error_handler", "redact_home", "status_for"]

log = logging.getLogger(__name__)


class NotAcceptableError(InvalidInputError):
    """The request accepts only response variants this node does not produce (HTTP 406)."""


STATUS_CODES: Final[tuple[tuple[type[CatsError], int], ...]] = (
    (CredentialsError, 401),  # before AuthError: no or unknown token
    (AuthError, 403),  # known caller, refused (code not allowed)
    (TooLargeError, 413),  # before LimitError
    (LimitError, 429),  # run queue full
    (NotAcceptableError, 406),  # before InvalidInputError
    (UnsupportedCodecError, 415),  # before InvalidInputError
    (InvalidInputError, 400),  # includes InvalidCIDError, UnsafePathError
    (DecodeError, 400),  # a submitted CAR or record that does not parse
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
