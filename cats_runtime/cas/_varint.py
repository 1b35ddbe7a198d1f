"""Unsigned LEB128 varints as multiformats uses them (minimal, at most 9 bytes)."""

from __future__ import annotations

from ..errors import DecodeError

__all__ = ["decode_varint", "encode_varint", "read_varint_stream"]

_MAX_BYTES = 9  # multiformats caps varints at 63 bits, i.e. 9 bytes


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer below 2**63 as a minimal unsigned varint."""
    if value < 0 or value >= 1 << 63:
        raise ValueError(f"varint must be in [0, 2**63), found {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode a varint at ``offset``.

    Returns:
        ``(value, new_offset)``.

    Raises:
        DecodeError: truncated, longer than 9 bytes, or not minimally encoded.
    """
    value = 0
    shift = 0
    end = len(data)
    i = offset
    while True:
        if i >= end:
            raise DecodeError(f"expected a varint at byte {offset}, found truncated data")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and i - offset > 1:
                raise DecodeError(f"expected a minimal varint at byte {offset}, found trailing zero byte")
            return value, i
        shift += 7
        if i - offset >= _MAX_BYTES:
            raise DecodeError(f"expected a varint of at most {_MAX_BYTES} bytes at byte {offset}")


def read_varint_stream(read: object) -> int | None:
    """Read one varint from a binary stream's ``read`` callable.

    Returns:
        The value, or ``None`` at a clean end of stream (no byte read).

    Raises:
        DecodeError: the stream ends inside the varint or the varint is malformed.
    """
    assert callable(read)
    buf = bytearray()
    while True:
        b = read(1)
        if not b:
            if buf:
                raise DecodeError("expected a varint, found end of stream inside it")
            return None
        buf += b
        if not b[0] & 0x80:
            value, _ = decode_varint(bytes(buf))
            return value
        if len(buf) >= _MAX_BYTES:
            raise DecodeError(f"expected a varint of at most {_MAX_BYTES} bytes")
