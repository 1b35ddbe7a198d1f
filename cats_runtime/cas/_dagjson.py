"""DAG-JSON (IPLD codec 0x0129), for showing records to people and for tests.

CATs stores and hashes records as DAG-CBOR; DAG-JSON is the readable view (``cats show``)
and must describe the same IPLD value, so both codecs share one data model (see
:mod:`cats_runtime.cas._dagcbor`). On the wire:

- links are ``{"/": "<cid>"}`` (base32 for CIDv1, base58btc for CIDv0);
- bytes are ``{"/": {"bytes": "<base64, standard alphabet, no padding>"}}``;
- map keys are sorted by their UTF-8 bytes and, in the compact form, there is no whitespace;
- integers have no decimal point or exponent, floats always have one or the other (Python's
  shortest round-tripping ``repr``), so the two kinds survive a round trip.

Strictness choices (DAG-JSON itself leaves them to the implementation): a data-model map
may not have the key ``"/"`` (it would read back as a link or bytes, so the encoding would be
ambiguous); :func:`decode` refuses duplicate or unsorted keys, a ``"/"`` map that is not exactly
a link or bytes, non-canonical base64, NaN/Infinity, integers outside the DAG-CBOR range and
lone surrogates. It accepts whitespace between tokens so that pretty-printed output
(``indent=``) round-trips.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from json.encoder import encode_basestring as _encode_string  # escapes only what JSON requires
from typing import Any, Final

from ..errors import DecodeError, InvalidCIDError, InvalidInputError, UnsupportedHashError
from ._cid import CID
from ._dagcbor import MAX_DEPTH

__all__ = ["decode", "encode"]

_MAX_UINT: Final = 2**64 - 1
_MIN_INT: Final = -(2**64)


class _PathError(Exception):
    # Internal: lets each container prepend its key so errors name where the problem is.
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path = ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _to_json(obj: Any, depth: int) -> Any:
    """The plain-JSON value that ``json.dumps`` should write for ``obj``."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        n = int(obj)
        if not _MIN_INT <= n <= _MAX_UINT:
            raise _PathError(f"expected an integer in [-2**64, 2**64 - 1], found {n}")
        return n
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise _PathError(f"expected a finite float (DAG-JSON forbids NaN and Infinity), found {obj!r}")
        return float(obj)
    if isinstance(obj, str):
        _check_text(obj)
        return str(obj)
    if isinstance(obj, bytes):
        return {"/": {"bytes": _b64(obj)}}
    if isinstance(obj, CID):
        return {"/": str(obj)}
    if isinstance(obj, list | dict) and depth >= MAX_DEPTH:
        raise _PathError(f"expected at most {MAX_DEPTH} levels of nesting (is the value cyclic?)")
    if isinstance(obj, list):
        out = []
        for i, item in enumerate(obj):
            try:
                out.append(_to_json(item, depth + 1))
            except _PathError as exc:
                exc.path = f"[{i}]{exc.path}"
                raise
        return out
    if isinstance(obj, dict):
        result: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise _PathError(f"expected map keys to be str, found {type(key).__name__} key {key!r}")
            _check_text(key)
            if key == "/":
                raise _PathError('a map key "/" is reserved in DAG-JSON for links and bytes')
            try:
                result[str(key)] = _to_json(value, depth + 1)
            except _PathError as exc:
                exc.path = f".{key}{exc.path}"
                raise
        return result
    if isinstance(obj, tuple):
        raise _PathError("expected a list, found a tuple (convert it with list())")
    raise _PathError(
        f"expected None, bool, int, float, str, bytes, list, dict or CID, found {type(obj).__name__}"
    )


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _PathError(f"expected valid Unicode text, found lone surrogates in {text!r}") from None


def encode(obj: Any, *, indent: int | None = None) -> str:
    """Encode ``obj`` as DAG-JSON text.

    Args:
        obj: A value of the IPLD data model as CATs represents it (the same types as
            :func:`cats_runtime.cas.dagcbor_encode` accepts).
        indent: ``None`` (default) gives the canonical compact form, whose UTF-8 bytes are
            the DAG-JSON block. A number pretty-prints with that many spaces per level, for
            people; that text is not canonical but :func:`decode` reads it.

    Returns:
        The text (not yet UTF-8 encoded: callers printing it want ``str``).

    Raises:
        InvalidInputError: ``obj`` holds something DAG-JSON cannot represent; the message
            gives the path, e.g. ``$.inputs.raw``.
    """
    try:
        plain = _to_json(obj, 0)
    except _PathError as exc:
        raise InvalidInputError(f"cannot encode DAG-JSON at ${exc.path}: {exc.message}") from None
    parts: list[str] = []
    _write(parts, plain, indent, 0)
    return "".join(parts)


def _float_text(x: float) -> str:
    # Python's repr is the shortest text that round-trips and always has a "." or an exponent,
    # so the value reads back as a float. Only the exponent's zero padding ("e-08") differs
    # from what JavaScript's DAG-JSON writes ("e-8"), so strip it.
    text = repr(x)
    mantissa, sep, exponent = text.partition("e")
    if sep:
        sign = exponent[0] if exponent[0] in "+-" else ""
        text = f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def _write(parts: list[str], value: Any, indent: int | None, level: int) -> None:
    if isinstance(value, str):
        parts.append(_encode_string(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(str(value))
    elif isinstance(value, float):
        parts.append(_float_text(value))
    elif isinstance(value, list):
        _write_items(parts, "[", "]", [(None, v) for v in value], indent, level)
    else:
        # Python orders str keys by code point, which is exactly the UTF-8 byte order DAG-JSON
        # requires (lone surrogates, the one exception, were rejected already).
        _write_items(parts, "{", "}", sorted(value.items()), indent, level)


def _write_items(
    parts: list[str],
    open_: str,
    close: str,
    items: list[tuple[str | None, Any]],
    indent: int | None,
    level: int,
) -> None:
    parts.append(open_)
    if not items:
        parts.append(close)
        return
    inner = "" if indent is None else "\n" + " " * (indent * (level + 1))
    for i, (key, value) in enumerate(items):
        if i:
            parts.append(",")
        parts.append(inner)
        if key is not None:
            parts.append(_encode_string(key))
            parts.append(":" if indent is None else ": ")
        _write(parts, value, indent, level + 1)
    if indent is not None:
        parts.append("\n" + " " * (indent * level))
    parts.append(close)


# -- decoding ---------------------------------------------------------------------------


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    prev: bytes | None = None
    for key, value in pairs:
        try:
            raw = key.encode("utf-8")
        except UnicodeEncodeError:
            raise DecodeError(
                f"invalid DAG-JSON: expected valid Unicode map keys, found lone surrogates in {key!r}"
            ) from None
        if prev is not None and raw <= prev:
            what = "duplicate" if raw == prev else "out-of-order"
            raise DecodeError(f"invalid DAG-JSON: {what} map key {key!r} (keys must be sorted bytewise)")
        prev = raw
        result[key] = value
    return result


def _parse_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:  # more digits than Python's int-parsing limit
        raise DecodeError(
            f"invalid DAG-JSON: expected an integer in the 64-bit range, found {text[:30]}..."
        ) from None
    if not _MIN_INT <= n <= _MAX_UINT:
        raise DecodeError(f"invalid DAG-JSON: expected an integer in [-2**64, 2**64 - 1], found {text}")
    return n


def _parse_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise DecodeError(f"invalid DAG-JSON: expected a finite float, found {text} (overflows to {x})")
    return x


def _parse_constant(name: str) -> Any:
    raise DecodeError(f"invalid DAG-JSON: expected a JSON value, found {name} (not allowed in JSON)")


def _from_json(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        _check_text(value)
        return value
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise _PathError(f"nesting deeper than {MAX_DEPTH} levels")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(_from_json(item, depth + 1))
            except _PathError as exc:
                exc.path = f"[{i}]{exc.path}"
                raise
        return out
    if isinstance(value, dict):
        if "/" in value:
            return _special(value)
        if depth >= MAX_DEPTH:
            raise _PathError(f"nesting deeper than {MAX_DEPTH} levels")
        for key, item in value.items():
            try:
                value[key] = _from_json(item, depth + 1)
            except _PathError as exc:
                exc.path = f".{key}{exc.path}"
                raise
        return value
    return value  # None, bool, int, float: already checked by the parse hooks


def _special(value: dict[str, Any]) -> CID | bytes:
    inner = value["/"]
    if len(value) == 1 and isinstance(inner, str):
        try:
            return CID.decode(inner)
        except (InvalidCIDError, UnsupportedHashError) as exc:
            raise _PathError(f"invalid link {inner!r}: {exc}") from None
    if len(value) == 1 and isinstance(inner, dict) and list(inner) == ["bytes"]:
        text = inner["bytes"]
        if isinstance(text, str):
            return _unb64(text)
    raise _PathError(
        'expected a map with key "/" to be a link {"/": "<cid>"} or bytes {"/": {"bytes": "<base64>"}}, '
        f"found {json.dumps(value)[:80]}"
    )


def _unb64(text: str) -> bytes:
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        data = None
    # Re-encoding catches padding, the URL-safe alphabet and non-zero trailing bits:
    # each byte string has exactly one accepted spelling.
    if data is None or _b64(data) != text:
        raise _PathError(f"expected unpadded standard base64 bytes, found {text[:40]!r}")
    return data


def decode(text: str | bytes) -> Any:
    """Decode DAG-JSON text (or its UTF-8 bytes) into the IPLD data model.

    Args:
        text: One JSON document; whitespace between tokens is allowed.

    Returns:
        The value, with links as :class:`~cats_runtime.cas.CID` and bytes as ``bytes``.

    Raises:
        DecodeError: not JSON, not UTF-8, or not valid DAG-JSON (see the module docstring).
    """
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid DAG-JSON at byte {exc.start}: expected UTF-8 text") from None
    try:
        raw = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid DAG-JSON at character {exc.pos}: {exc.msg}") from None
    except RecursionError:
        raise DecodeError(f"invalid DAG-JSON: nesting deeper than {MAX_DEPTH} levels") from None
    try:
        return _from_json(raw, 0)
    except _PathError as exc:
        raise DecodeError(f"invalid DAG-JSON at ${exc.path}: {exc.message}") from None
