"""Bearer-token authentication of Order submissions (the token store itself is in operations)."""

from __future__ import annotations

from starlette.requests import Request

from ..errors import CredentialsError
from ..operations import TokenStore

__all__ = ["authenticate"]


def authenticate(request: Request, tokens: TokenStore) -> str:
    """The organization whose token is in ``Authorization: Bearer <token>``.

    Raises:
        CredentialsError: The header is missing, not a bearer token, or the token is unknown
            (401; the token is never echoed or logged).
    """
    header = request.headers.get("authorization")
    if header is None:
        raise CredentialsError("expected an 'Authorization: Bearer <token>' header, found none")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise CredentialsError("expected an 'Authorization: Bearer <token>' header, found another scheme")
    if len(token) > 512:
        raise CredentialsError("expected a bearer token of at most 512 characters, found a longer one")
    return tokens.authenticate(token)
