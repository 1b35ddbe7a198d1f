"""Strict, canonical DAG-CBOR (IPLD codec 0x71).

The Python data model of the codec is exactly what :func:`decode` returns:

=====================  ===========================================================
IPLD kind              Python
=====================  ===========================================================
null / bool            ``None`` / ``bool``
integer                ``int`` in ``[-2**64, 2**64 - 1]`` (the CBOR major 0/1 range)
float                  ``float`` (finite; always written as a 64-bit float)
string                 ``str`` (UTF-8 on the wire)
bytes                  ``bytes``
list                   ``list``
map                    ``dict`` with ``str`` keys
link                   :class:`~cats_runtime.cas.CID` (CBOR tag 42)
=====================  ===========================================================

:func:`encode` accepts exactly these types (subclasses included, so a ``StrEnum`` member
encodes as its string). Tuples, sets, ``bytearray`` and everything else are rejected rather
than coerced: a value that would not come back from :func:`decode` unchanged is almost always
a bug in the caller, and a content address must never depend on such an accident.

:func:`encode` always writes the one canonical form the DAG-CBOR spec requires (shortest
integer and length arguments, definite lengths, map keys sorted by UTF-8 length then
bytewise, 64-bit floats). :func:`decode` accepts only that form, so every block has exactly
one decoding and every value exactly one encoding; anything else raises
:class:`~cats_runtime.errors.DecodeError` naming the byte offset.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterator
from typing import Any, Final

from ..errors import DecodeError, InvalidCIDError, InvalidInputError, UnsupportedHashError
from ._cid import CID

__all__ = ["MAX_DEPTH", "decode", "encode", "iter_links"]

MAX_DEPTH: Final = 256
"""Deepest nesting of lists and maps :func:`encode` writes and :func:`decode` reads.

CATs records nest a handful of levels; the bound keeps a hostile block from exhausting
the Python stack (the decoder is recursive) and makes cyclic values fail cleanly on encode.
"""

_CID_TAG: Final = 42
_MAX_UINT: Final = 2**64 - 1
_MIN_INT: Final = -(2**64)
_F64: Final = struct.Struct(">d")
_F64_HEAD: Final = b"\xfb"
_TAG42_HEAD: Final = b"\xd8\x2a"
# After the 0xd8 of a link to a 36-byte CID: tag number 42, byte string of 37 bytes, prefix 0x00.
_LINK36_HEAD: Final = b"\x2a\x58\x25\x00"

# Major types, already shifted into the high three bits of the initial byte.
_UINT: Final = 0x00
_NINT: Final = 0x20
_BYTES: Final = 0x40
_TEXT: Final = 0x60
_ARRAY: Final = 0x80
_MAP: Final = 0xA0


# -- encoding ---------------------------------------------------------------------------


class _EncodePathError(Exception):
    # Internal: carries a message outwards while each container prepends its key, so the
    # final InvalidInputError names where in the value the offending item sits.
    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def _head(major: int, n: int) -> bytes:
    """The shortest CBOR initial byte + argument for ``n`` (``0 <= n <= 2**64 - 1``)."""
    if n < 24:
        return bytes((major | n,))
    if n < 0x100:
        return bytes((major | 24, n))
    if n < 0x10000:
        return bytes((major | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major | 26,)) + n.to_bytes(4, "big")
    return bytes((major | 27,)) + n.to_bytes(8, "big")


def _key_order(key: bytes) -> tuple[int, bytes]:
    return (len(key), key)


def _encode_into(out: bytearray, obj: Any, depth: int) -> None:
    # Exact-type checks first (the common case and the fast path), then isinstance for
    # subclasses. bool must be tested before int because bool is an int.
    t = type(obj)
    if t is str:
        raw = obj.encode("utf-8", "strict")
        out += _head(_TEXT, len(raw))
        out += raw
    elif t is dict:
        _encode_map(out, obj, depth)
    elif t is CID:
        buf = obj.buffer
        out += _TAG42_HEAD
        out += _head(_BYTES, len(buf) + 1)
        out.append(0)
        out += buf
    elif t is int:
        _encode_int(out, obj)
    elif t is list:
        _encode_list(out, obj, depth)
    elif obj is None:
        out.append(0xF6)
    elif t is bool:
        out.append(0xF5 if obj else 0xF4)
    elif t is bytes:
        out += _head(_BYTES, len(obj))
        out += obj
    elif t is float:
        _encode_float(out, obj)
    elif isinstance(obj, bool):
        out.append(0xF5 if obj else 0xF4)
    elif isinstance(obj, int):
        _encode_int(out, int(obj))
    elif isinstance(obj, str):
        _encode_into(out, str(obj), depth)
    elif isinstance(obj, bytes):
        _encode_into(out, bytes(obj), depth)
    elif isinstance(obj, float):
        _encode_float(out, float(obj))
    elif isinstance(obj, list):
        _encode_list(out, obj, depth)
    elif isinstance(obj, dict):
        _encode_map(out, obj, depth)
    elif isinstance(obj, tuple):
        raise _EncodePathError("expected a list, found a tuple (convert it with list())")
    else:
        raise _EncodePathError(
            f"expected None, bool, int, float, str, bytes, list, dict or CID, found {type(obj).__name__}"
        )


def _encode_int(out: bytearray, n: int) -> None:
    if n >= 0:
        if n > _MAX_UINT:
            raise _EncodePathError(f"expected an integer <= 2**64 - 1, found {n}")
        out += _head(_UINT, n)
    else:
        if n < _MIN_INT:
            raise _EncodePathError(f"expected an integer >= -2**64, found {n}")
        out += _head(_NINT, -1 - n)


def _encode_float(out: bytearray, x: float) -> None:
    if not math.isfinite(x):
        raise _EncodePathError(f"expected a finite float (DAG-CBOR forbids NaN and Infinity), found {x!r}")
    out += _F64_HEAD
    out += _F64.pack(x)


def _encode_list(out: bytearray, items: list[Any], depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise _EncodePathError(f"expected at most {MAX_DEPTH} levels of nesting (is the value cyclic?)")
    out += _head(_ARRAY, len(items))
    for i, item in enumerate(items):
        try:
            _encode_into(out, item, depth + 1)
        except _EncodePathError as exc:
            exc.path = f"[{i}]{exc.path}"
            raise


def _encode_map(out: bytearray, mapping: dict[Any, Any], depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise _EncodePathError(f"expected at most {MAX_DEPTH} levels of nesting (is the value cyclic?)")
    entries: list[tuple[bytes, str]] = []
    for key in mapping:
        if not isinstance(key, str):
            raise _EncodePathError(f"expected map keys to be str, found {type(key).__name__} key {key!r}")
        entries.append((key.encode("utf-8", "strict"), key))
    # Canonical order: shorter UTF-8 key first, then bytewise (the DAG-CBOR spec's rule,
    # which is RFC 7049's canonical order restricted to string keys).
    entries.sort(key=lambda e: _key_order(e[0]))
    out += _head(_MAP, len(entries))
    for raw, key in entries:
        out += _head(_TEXT, len(raw))
        out += raw
        try:
            _encode_into(out, mapping[key], depth + 1)
        except _EncodePathError as exc:
            exc.path = f".{key}{exc.path}"
            raise


def encode(obj: Any) -> bytes:
    """Encode ``obj`` as canonical DAG-CBOR.

    Args:
        obj: A value of the codec's data model (see the module docstring). ``CID`` values
            become links (tag 42).

    Returns:
        The one canonical encoding of ``obj``.

    Raises:
        InvalidInputError: ``obj`` holds something DAG-CBOR cannot represent (a tuple, a
            non-string map key, NaN or Infinity, an integer outside the 64-bit CBOR range,
            a string with lone surrogates, nesting deeper than :data:`MAX_DEPTH`). The message
            gives the path to the offending item, e.g. ``$.params.x[2]``.
    """
    out = bytearray()
    try:
        _encode_into(out, obj, 0)
    except _EncodePathError as exc:
        raise InvalidInputError(f"cannot encode DAG-CBOR at ${exc.path}: {exc.message}") from None
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"cannot encode DAG-CBOR: expected valid Unicode text, found {exc}") from None
    return bytes(out)


# -- decoding ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _parse_cid(raw: bytes) -> CID:
    # Records of one catalog link the same few Function/Structure/Order CIDs over and over;
    # CIDs are immutable, so parsing each distinct one once is safe and halves decode time.
    return CID.from_bytes(raw)


class _Decoder:
    """Index-based decoder over one immutable buffer; positions only ever move forwards."""

    __slots__ = ("buf", "end")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        # One up-front copy of a mutable buffer: indexing and slicing ``bytes`` is the fastest
        # form in CPython, and the caller cannot change the bytes under the decoder.
        self.buf = data if type(data) is bytes else bytes(data)
        self.end = len(self.buf)

    def fail(self, pos: int, message: str) -> DecodeError:
        return DecodeError(f"invalid DAG-CBOR at byte {pos}: {message}")

    def need(self, pos: int, n: int, what: str) -> None:
        if pos + n > self.end:
            raise self.fail(pos, f"expected {n} bytes of {what}, found {self.end - pos} (truncated input)")

    def argument(self, start: int, info: int) -> tuple[int, int]:
        """Read the argument of the item whose initial byte is at ``start``; returns (value, next pos)."""
        pos = start + 1
        if info < 24:
            return info, pos
        if info == 24:
            self.need(pos, 1, "a 1-byte argument")
            n = self.buf[pos]
            if n < 24:
                raise self.fail(start, f"non-minimal argument: {n} written in 1 extra byte")
            return n, pos + 1
        if info == 25:
            self.need(pos, 2, "a 2-byte argument")
            n = int.from_bytes(self.buf[pos : pos + 2], "big")
            if n < 0x100:
                raise self.fail(start, f"non-minimal argument: {n} written in 2 bytes")
            return n, pos + 2
        if info == 26:
            self.need(pos, 4, "a 4-byte argument")
            n = int.from_bytes(self.buf[pos : pos + 4], "big")
            if n < 0x10000:
                raise self.fail(start, f"non-minimal argument: {n} written in 4 bytes")
            return n, pos + 4
        if info == 27:
            self.need(pos, 8, "an 8-byte argument")
            n = int.from_bytes(self.buf[pos : pos + 8], "big")
            if n < 0x100000000:
                raise self.fail(start, f"non-minimal argument: {n} written in 8 bytes")
            return n, pos + 8
        if info == 31:
            raise self.fail(start, "indefinite-length items are not allowed in DAG-CBOR")
        raise self.fail(start, f"reserved additional information {info}")

    def item(self, pos: int, depth: int) -> tuple[Any, int]:
        if pos >= self.end:
            raise self.fail(pos, "expected a data item, found end of input (truncated input)")
        buf = self.buf
        initial = buf[pos]
        # The two most frequent items of a record, read without the general dispatch: a link to
        # a 36-byte CID (tag 42 with a 1-byte tag number, a byte string of 37 bytes with a 1-byte
        # length, the 0x00 multibase prefix: every header minimal) and null.
        if initial == 0xD8 and buf[pos + 1 : pos + 5] == _LINK36_HEAD and pos + 41 <= self.end:
            try:
                return _parse_cid(buf[pos + 5 : pos + 41]), pos + 41
            except (InvalidCIDError, UnsupportedHashError) as exc:
                raise self.fail(pos + 5, f"invalid CID in tag 42: {exc}") from None
        if initial == 0xF6:
            return None, pos + 1
        major = initial >> 5
        info = initial & 0x1F
        if major == 7:
            return self.simple(pos, info)
        if info < 24:  # the argument is in the initial byte: the common case, kept inline
            n = info
            p = pos + 1
        else:
            n, p = self.argument(pos, info)
        if major == 3:
            end = p + n
            if end > self.end:
                self.need(p, n, "text string content")
            try:
                return self.buf[p:end].decode("utf-8"), end
            except UnicodeDecodeError:
                return self.text(p, end), end  # raises with the offset
        if major == 0:
            return n, p
        if major == 5:
            return self.map(pos, n, p, depth)
        if major == 6:
            return self.link(pos, n, p)
        if major == 2:
            self.need(p, n, "byte string content")
            return self.buf[p : p + n], p + n
        if major == 1:
            return -1 - n, p
        # major == 4: a list.
        if depth >= MAX_DEPTH:
            raise self.fail(pos, f"nesting deeper than {MAX_DEPTH} levels")
        # Every item takes at least one byte: reject impossible counts before allocating.
        if n > self.end - p:
            raise self.fail(pos, f"list of {n} items cannot fit in {self.end - p} bytes (truncated input)")
        items = []
        for _ in range(n):
            value, p = self.item(p, depth + 1)
            items.append(value)
        return items, p

    def text(self, p: int, end: int) -> str:
        try:
            return self.buf[p:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(p + exc.start, "expected UTF-8 text, found an invalid byte sequence") from None

    def map(self, pos: int, n: int, p: int, depth: int) -> tuple[dict[str, Any], int]:
        if depth >= MAX_DEPTH:
            raise self.fail(pos, f"nesting deeper than {MAX_DEPTH} levels")
        if 2 * n > self.end - p:
            raise self.fail(pos, f"map of {n} entries cannot fit in {self.end - p} bytes (truncated input)")
        result: dict[str, Any] = {}
        buf = self.buf
        end = self.end
        prev = b""
        for i in range(n):
            key_pos = p
            if p >= end:
                raise self.fail(p, "expected a map key, found end of input (truncated input)")
            head = buf[p]
            if head >> 5 != 3:
                raise self.fail(p, f"expected a string map key, found major type {head >> 5}")
            if head < 0x78:  # a key shorter than 24 bytes: its length is in the initial byte
                klen = head & 0x1F
                p += 1
            else:
                klen, p = self.argument(p, head & 0x1F)
            key_end = p + klen
            if key_end > end:
                self.need(p, klen, "map key content")
            raw = buf[p:key_end]
            # Length-first, then bytewise: the only order DAG-CBOR accepts. Equal keys
            # compare equal here too, so duplicates are caught by the same test.
            if i and (klen < len(prev) or (klen == len(prev) and raw <= prev)):
                what = "duplicate" if raw == prev else "out-of-order"
                key = self.text(p, key_end)
                raise self.fail(key_pos, f"{what} map key {key!r} (keys must be sorted length-first)")
            try:
                key = raw.decode("utf-8")
            except UnicodeDecodeError:
                key = self.text(p, key_end)  # raises with the offset
            prev = raw
            value, p = self.item(key_end, depth + 1)
            result[key] = value
        return result, p

    def link(self, pos: int, tag: int, p: int) -> tuple[CID, int]:
        if tag != _CID_TAG:
            raise self.fail(pos, f"expected tag 42 (CID), found tag {tag}")
        if p >= self.end:
            raise self.fail(p, "expected the byte string of a CID, found end of input (truncated input)")
        if self.buf[p] >> 5 != 2:
            raise self.fail(p, f"expected a byte string inside tag 42, found major type {self.buf[p] >> 5}")
        n, q = self.argument(p, self.buf[p] & 0x1F)
        self.need(q, n, "CID bytes")
        if n == 0 or self.buf[q] != 0:
            raise self.fail(q, "expected a CID byte string starting with the 0x00 multibase prefix")
        try:
            cid = _parse_cid(self.buf[q + 1 : q + n])
        except (InvalidCIDError, UnsupportedHashError) as exc:
            raise self.fail(q + 1, f"invalid CID in tag 42: {exc}") from None
        return cid, q + n

    def simple(self, pos: int, info: int) -> tuple[Any, int]:
        if info == 22:
            return None, pos + 1
        if info == 20:
            return False, pos + 1
        if info == 21:
            return True, pos + 1
        if info == 27:
            self.need(pos + 1, 8, "a 64-bit float")
            (x,) = _F64.unpack_from(self.buf, pos + 1)
            if not math.isfinite(x):
                raise self.fail(pos, f"expected a finite float, found {x!r}")
            return x, pos + 9
        if info == 25 or info == 26:
            raise self.fail(pos, f"expected a 64-bit float, found a {16 if info == 25 else 32}-bit float")
        if info == 23:
            raise self.fail(pos, "undefined is not allowed in DAG-CBOR")
        if info == 31:
            raise self.fail(pos, "unexpected break (indefinite lengths are not allowed in DAG-CBOR)")
        raise self.fail(
            pos,
            f"simple value {info if info < 24 else 'with additional info ' + str(info)} "
            "is not allowed in DAG-CBOR",
        )


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one DAG-CBOR block, accepting only the canonical form.

    Args:
        data: The complete block; trailing bytes are an error.

    Returns:
        The value, in the data model described in the module docstring. Links are ``CID``.

    Raises:
        DecodeError: the bytes are truncated, have trailing data, or are not canonical
            DAG-CBOR (non-minimal integers or lengths, unsorted or duplicate map keys,
            non-string keys, indefinite lengths, tags other than 42, a malformed CID,
            16/32-bit floats, NaN or Infinity, undefined or other simple values, invalid
            UTF-8, nesting deeper than :data:`MAX_DEPTH`). The message names the byte offset.
    """
    decoder = _Decoder(data)
    value, end = decoder.item(0, 0)
    if end != decoder.end:
        raise decoder.fail(end, f"expected end of input, found {decoder.end - end} trailing bytes")
    return value


def iter_links(obj: Any) -> Iterator[CID]:
    """Yield every CID in a decoded value, depth-first, in the value's own order.

    For decoded maps that is the canonical key order, so the sequence is deterministic. A CID
    that occurs several times is yielded each time.
    """
    stack: list[Any] = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, CID):
            yield item
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
