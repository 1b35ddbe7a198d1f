"""The few multibase encodings CIDs use: base32 (CIDv1 default), base58btc (CIDv0), base36, base16."""

from __future__ import annotations

import base64
import binascii

from ..errors import InvalidCIDError

__all__ = ["b58decode", "b58encode", "multibase_decode", "multibase_encode"]

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    """Bitcoin base58 encoding."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Bitcoin base58 decoding; raises InvalidCIDError on a foreign character."""
    n = 0
    for ch in text:
        try:
            n = n * 58 + _B58_INDEX[ch]
        except KeyError:
            raise InvalidCIDError(f"expected a base58btc character, found {ch!r}") from None
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def _b36encode(data: bytes) -> str:
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "0" * zeros + "".join(reversed(out))


def _b36decode(text: str) -> bytes:
    text = text.lower()
    n = 0
    for ch in text:
        idx = _B36.find(ch)
        if idx < 0:
            raise InvalidCIDError(f"expected a base36 character, found {ch!r}")
        n = n * 36 + idx
    zeros = len(text) - len(text.lstrip("0"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def multibase_encode(data: bytes, base: str = "base32") -> str:
    """Encode ``data`` with a multibase prefix (``base32``, ``base58btc``, ``base36``, ``base16``)."""
    if base == "base32":
        return "b" + base64.b32encode(data).decode("ascii").rstrip("=").lower()
    if base == "base58btc":
        return "z" + b58encode(data)
    if base == "base36":
        return "k" + _b36encode(data)
    if base == "base16":
        return "f" + data.hex()
    raise InvalidCIDError(f"expected one of base32, base58btc, base36, base16, found base {base!r}")


def multibase_decode(text: str) -> bytes:
    """Decode a multibase string; raises InvalidCIDError on an unknown prefix or bad body."""
    if not text:
        raise InvalidCIDError("expected a multibase string, found an empty string")
    prefix, body = text[0], text[1:]
    try:
        if prefix in "bB":
            if body != body.lower() and body != body.upper():
                raise InvalidCIDError("expected base32 in one case, found mixed case")
            return base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        if prefix == "z":
            return b58decode(body)
        if prefix in "kK":
            return _b36decode(body)
        if prefix in "fF":
            return bytes.fromhex(body)
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, InvalidCIDError):
            raise
        raise InvalidCIDError(f"expected valid multibase text after prefix {prefix!r}: {exc}") from None
    raise InvalidCIDError(f"expected a multibase prefix b, B, z, k, K, f or F, found {prefix!r}")
