"""The DAG-PB codec (multicodec 0x70), strict, byte-identical to Kubo's encoder.

Wire format (ipld.io DAG-PB spec)::

    PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }   Links written first
    PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }

Decoding is strict so that ``encode_pbnode(decode_pbnode(b)) == b`` for every accepted ``b``:
fields must appear in the canonical order, at most once (except Links), with the right wire
type; unknown fields, non-minimal varints, trailing bytes and links without a Hash are
errors. The "links sorted by name" rule is applied by the encoder but not enforced on decode,
as the spec asks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DecodeError, InvalidInputError
from ._cid import CID

__all__ = ["PBLink", "PBNode", "decode_pbnode", "encode_pbnode"]

_U64_MAX = (1 << 64) - 1


def pb_varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer below 2**64."""
    if value < 0x80:
        if value < 0:
            raise InvalidInputError(f"expected a non-negative protobuf varint, found {value}")
        return bytes((value,))
    if value > _U64_MAX:
        raise InvalidInputError(f"expected a protobuf varint below 2**64, found {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def pb_read_varint(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """Read a minimal protobuf varint (at most 10 bytes, below 2**64) at ``pos``; returns (value, end)."""
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise DecodeError(f"expected a protobuf varint at byte {start}, found truncated data")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and pos - start > 1:
                raise DecodeError(f"expected a minimal protobuf varint at byte {start}, found a padded one")
            if value > _U64_MAX:
                raise DecodeError(f"expected a protobuf varint below 2**64 at byte {start}, found {value}")
            return value, pos
        shift += 7
        if pos - start >= 10:
            raise DecodeError(f"expected a protobuf varint of at most 10 bytes at byte {start}")


def pb_read_bytes(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """Read a length prefix at ``pos``; returns the (start, stop) of the bytes it delimits."""
    length, pos = pb_read_varint(data, pos, end)
    stop = pos + length
    if stop > end:
        raise DecodeError(f"expected {length} bytes at byte {pos}, found {end - pos}")
    return pos, stop


@dataclass(frozen=True, slots=True)
class PBLink:
    """One link of a dag-pb node.

    Attributes:
        cid: the linked block.
        name: the link name; ``None`` means the field is absent, ``""`` that it is present and
            empty (Kubo writes an empty name on file links, and the bytes differ).
        tsize: cumulative size of the linked DAG, or ``None`` when absent.
    """

    cid: CID
    name: str | None = None
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    """A dag-pb node: links, then opaque data (UnixFS puts its metadata there).

    Attributes:
        links: the links, in encoding order.
        data: the Data field, or ``None`` when absent (``b""`` is present and empty).
    """

    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


def _name_key(link: PBLink) -> bytes:
    return b"" if link.name is None else link.name.encode("utf-8")


def encode_link(link: PBLink) -> bytes:
    """The bytes of one PBLink message (without its field tag and length)."""
    cid_bytes = link.cid.buffer
    parts = [b"\x0a", pb_varint(len(cid_bytes)), cid_bytes]
    if link.name is not None:
        name = link.name.encode("utf-8")
        parts += [b"\x12", pb_varint(len(name)), name]
    if link.tsize is not None:
        parts += [b"\x18", pb_varint(link.tsize)]
    return b"".join(parts)


def encode_pbnode(node: PBNode) -> bytes:
    """Encode a node exactly as Kubo does: links sorted by name bytes (stable), then Data.

    Raises:
        InvalidInputError: a Tsize is negative or not below 2**64, or a name is not encodable.
    """
    links = node.links
    keys = [_name_key(link) for link in links]
    if any(keys[i] > keys[i + 1] for i in range(len(keys) - 1)):
        # The spec requires sorted links; a stable sort keeps file links (all named "") in order.
        links = tuple(link for _, link in sorted(zip(keys, links, strict=True), key=lambda kv: kv[0]))
    parts: list[bytes] = []
    for link in links:
        body = encode_link(link)
        parts += [b"\x12", pb_varint(len(body)), body]
    if node.data is not None:
        parts += [b"\x0a", pb_varint(len(node.data)), node.data]
    return b"".join(parts)


def _decode_link(data: bytes | memoryview, pos: int, end: int) -> PBLink:
    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    last_field = 0
    while pos < end:
        key, pos = pb_read_varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if field <= last_field or field > 3:
            what = "unknown field" if field > 3 or field == 0 else "out-of-order or repeated field"
            raise DecodeError(
                f"expected PBLink fields Hash=1, Name=2, Tsize=3 in order, found {what} {field}"
            )
        last_field = field
        if field == 3:
            if wire != 0:
                raise DecodeError(f"expected PBLink.Tsize with wire type 0, found wire type {wire}")
            tsize, pos = pb_read_varint(data, pos, end)
            continue
        if wire != 2:
            raise DecodeError(f"expected PBLink field {field} with wire type 2, found wire type {wire}")
        start, pos = pb_read_bytes(data, pos, end)
        if field == 1:
            try:
                cid = CID.from_bytes(bytes(data[start:pos]))
            except InvalidInputError as exc:  # InvalidCIDError or UnsupportedHashError
                raise DecodeError(f"expected a CID CATs can verify in PBLink.Hash: {exc}") from None
        else:
            try:
                name = bytes(data[start:pos]).decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError("expected PBLink.Name to be UTF-8, found invalid bytes") from None
    if cid is None:
        raise DecodeError("expected PBLink.Hash, found a link without it")
    return PBLink(cid, name, tsize)


def decode_pbnode(data: bytes | memoryview) -> PBNode:
    """Decode a dag-pb block strictly.

    Raises:
        DecodeError: the bytes are not a canonical dag-pb node (see the module docstring).
    """
    pos = 0
    end = len(data)
    links: list[PBLink] = []
    node_data: bytes | None = None
    while pos < end:
        key, pos = pb_read_varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if field not in (1, 2):
            raise DecodeError(f"expected PBNode field Links=2 or Data=1, found unknown field {field}")
        if wire != 2:
            raise DecodeError(f"expected PBNode field {field} with wire type 2, found wire type {wire}")
        if node_data is not None:
            raise DecodeError(f"expected nothing after PBNode.Data, found field {field}")
        start, pos = pb_read_bytes(data, pos, end)
        if field == 1:
            node_data = bytes(data[start:pos])
        else:
            links.append(_decode_link(data, start, pos))
    return PBNode(tuple(links), node_data)
