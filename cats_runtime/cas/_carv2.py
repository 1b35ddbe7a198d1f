"""CARv2: a CARv1 data payload behind a fixed header, optionally followed by an index.

Format (ipld.io CARv2 spec)::

    pragma   11 bytes   0a a1 67 76 65 72 73 69 6f 6e 02   (a CARv1-style header {"version": 2})
    header   40 bytes   characteristics (16) | data offset (u64 LE) | data size (u64 LE) |
                        index offset (u64 LE, 0 = none)
    [padding]           up to the data offset
    data payload        a complete CARv1
    [padding]           up to the index offset
    index               varint codec, then the index

The index written here is ``MultihashIndexSorted`` (codec 0x0401), go-car's default::

    i32 LE  number of multihash codes; per code, ascending:
      u64 LE  multihash code
      i32 LE  number of widths; per width (digest length + 8), ascending:
        u32 LE  width    u64 LE  bytes of entries    entries: digest | u64 LE offset, by digest

Each offset is that of the block's section (its length varint) from the start of the data
payload. Identity-hashed blocks are not indexed (as go-car). Reading never trusts an index:
:class:`~cats_runtime.cas.CarReader` reads the payload and hash-checks every block;
:func:`decode_index` exists for tools and tests, and refuses malformed input with
:class:`~cats_runtime.errors.CARFormatError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, BinaryIO, Final

from ..errors import CARFormatError
from ._cid import CID, IDENTITY, Block
from ._varint import encode_varint

__all__ = [
    "CARV2_HEADER_SIZE",
    "CARV2_PRAGMA",
    "MULTIHASH_INDEX_SORTED",
    "V2Header",
    "decode_index",
    "decode_v2_header",
    "write_car_v2",
]

CARV2_PRAGMA: Final = bytes.fromhex("0aa16776657273696f6e02")
CARV2_HEADER_SIZE: Final = 40
MULTIHASH_INDEX_SORTED: Final = 0x0401
_FULLY_INDEXED: Final = 1 << 127  # the characteristics' leftmost bit
_MAX_OFFSET: Final = 1 << 62  # no real file is this large; bigger values are forged


@dataclass(frozen=True, slots=True)
class V2Header:
    """The fixed CARv2 header after the pragma.

    Attributes:
        characteristics: the 128-bit field (bit 127, the leftmost: "fully indexed").
        data_offset: where the CARv1 payload starts, from the start of the file.
        data_size: its length in bytes.
        index_offset: where the index starts (0: no index).
    """

    characteristics: int
    data_offset: int
    data_size: int
    index_offset: int

    def encode(self) -> bytes:
        """The 40 header bytes."""
        return self.characteristics.to_bytes(16, "little") + struct.pack(
            "<QQQ", self.data_offset, self.data_size, self.index_offset
        )


def decode_v2_header(raw: bytes) -> V2Header:
    """Parse and check the 40 header bytes.

    Raises:
        CARFormatError: wrong length, or offsets that cannot describe a CARv2.
    """
    if len(raw) != CARV2_HEADER_SIZE:
        raise CARFormatError(f"expected a {CARV2_HEADER_SIZE}-byte CARv2 header, found {len(raw)} bytes")
    characteristics = int.from_bytes(raw[:16], "little")
    data_offset, data_size, index_offset = struct.unpack("<QQQ", raw[16:])
    start = len(CARV2_PRAGMA) + CARV2_HEADER_SIZE
    if not start <= data_offset < _MAX_OFFSET:
        raise CARFormatError(f"expected a CARv2 data offset of at least {start}, found {data_offset}")
    if not 0 < data_size < _MAX_OFFSET:
        raise CARFormatError(f"expected a non-empty CARv2 data payload, found data size {data_size}")
    if index_offset and not data_offset + data_size <= index_offset < _MAX_OFFSET:
        raise CARFormatError(
            f"expected the CARv2 index after the data payload (at {data_offset + data_size} or later), "
            f"found index offset {index_offset}"
        )
    return V2Header(characteristics, data_offset, data_size, index_offset)


def _index_bytes(entries: list[tuple[int, bytes, int]]) -> bytes:
    by_code: dict[int, dict[int, list[tuple[bytes, int]]]] = {}
    for code, digest, offset in entries:
        by_code.setdefault(code, {}).setdefault(len(digest) + 8, []).append((digest, offset))
    parts = [encode_varint(MULTIHASH_INDEX_SORTED), struct.pack("<i", len(by_code))]
    for code in sorted(by_code):
        widths = by_code[code]
        parts += (struct.pack("<Q", code), struct.pack("<i", len(widths)))
        for width in sorted(widths):
            records = sorted(widths[width])
            parts += (struct.pack("<IQ", width, width * len(records)),)
            parts += (digest + struct.pack("<Q", offset) for digest, offset in records)
    return b"".join(parts)


def write_car_v2(out: BinaryIO | IO[bytes], roots: list[CID], blocks: Iterable[Block]) -> int:
    """Write a CARv2 (CARv1 payload + ``MultihashIndexSorted`` index) to a seekable ``out``.

    The header is written last (its sizes are known only then), so ``out`` must be seekable
    and positioned at its start.

    Returns:
        The number of blocks written.

    Raises:
        InvalidInputError: ``roots`` is empty or holds something other than CIDs.
    """
    from ._car import _header_bytes  # the payload is a CARv1: one header writer

    base = out.tell()
    data_offset = len(CARV2_PRAGMA) + CARV2_HEADER_SIZE
    out.write(CARV2_PRAGMA + bytes(CARV2_HEADER_SIZE))
    position = len(header := _header_bytes(roots))
    out.write(header)
    entries: list[tuple[int, bytes, int]] = []
    count = 0
    for block in blocks:
        cid = block.cid.buffer
        section = encode_varint(len(cid) + len(block.data)) + cid
        if block.cid.hash_code != IDENTITY:
            entries.append((block.cid.hash_code, block.cid.digest, position))
        out.write(section)
        out.write(block.data)
        position += len(section) + len(block.data)
        count += 1
    out.write(_index_bytes(entries))
    end = out.tell()
    out.seek(base + len(CARV2_PRAGMA))
    out.write(V2Header(0, data_offset, position, data_offset + position).encode())
    out.seek(end)
    return count


def decode_index(raw: bytes) -> list[tuple[int, bytes, int]]:
    """Parse a CARv2 index (codec varint included): ``(multihash code, digest, offset)`` entries.

    Only ``MultihashIndexSorted`` is understood. The index is a hint, never trusted: this
    checks its structure (counts, widths, sort order, lengths), not what it points to.

    Raises:
        CARFormatError: any malformed, truncated or trailing byte.
    """
    view = memoryview(raw)
    pos = 0

    def take(n: int, what: str) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(view):
            raise CARFormatError(f"truncated CARv2 index: expected {n} bytes of {what} at byte {pos}")
        chunk = view[pos : pos + n]
        pos += n
        return chunk

    codec = 0
    for shift in range(0, 63, 7):
        byte = take(1, "codec varint")[0]
        codec |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
    else:
        raise CARFormatError("expected a CARv2 index codec varint, found an overlong one")
    if codec != MULTIHASH_INDEX_SORTED:
        raise CARFormatError(f"expected index codec 0x0401 (MultihashIndexSorted), found {codec:#x}")
    entries: list[tuple[int, bytes, int]] = []
    (codes,) = struct.unpack("<i", take(4, "code count"))
    if codes < 0:
        raise CARFormatError(f"expected a non-negative multihash code count, found {codes}")
    last_code = -1
    for _ in range(codes):
        (code,) = struct.unpack("<Q", take(8, "multihash code"))
        if code <= last_code:
            raise CARFormatError(
                f"expected multihash codes in ascending order, found {code} after {last_code}"
            )
        last_code = code
        (widths,) = struct.unpack("<i", take(4, "width count"))
        if widths < 0:
            raise CARFormatError(f"expected a non-negative width count, found {widths}")
        last_width = -1
        for _ in range(widths):
            width, size = struct.unpack("<IQ", take(12, "width bucket"))
            if width <= max(last_width, 8) or size % width:
                raise CARFormatError(
                    f"expected ascending widths above 8 dividing their bucket size, found width {width}, "
                    f"size {size}"
                )
            last_width = width
            bucket = take(size, "entries") if size <= len(view) else take(-1, "entries")
            previous = b""
            for start in range(0, size, width):
                digest = bytes(bucket[start : start + width - 8])
                if digest < previous:
                    raise CARFormatError("expected index entries sorted by digest, found them out of order")
                previous = digest
                (offset,) = struct.unpack("<Q", bucket[start + width - 8 : start + width])
                entries.append((code, digest, offset))
    if pos != len(view):
        raise CARFormatError(f"expected the CARv2 index to end at byte {pos}, found {len(view) - pos} more")
    return entries
