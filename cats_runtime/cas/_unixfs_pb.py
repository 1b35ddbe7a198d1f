"""The UnixFS ``Data`` protobuf (a dag-pb node's Data field) and the shared value types.

Wire format (UnixFS spec)::

    Data { required DataType Type = 1; optional bytes Data = 2; optional uint64 filesize = 3;
           repeated uint64 blocksizes = 4 (not packed); optional uint64 hashType = 5;
           optional uint64 fanout = 6; optional uint32 mode = 7; optional UnixTime mtime = 8; }
    UnixTime { required int64 Seconds = 1; optional fixed32 FractionalNanoseconds = 2; }

Decoding is strict: fields in ascending order (``blocksizes`` may repeat), right wire types,
no unknown fields, minimal varints, so that decoding then encoding gives the same bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import DecodeError, InvalidInputError
from ._cid import CID
from ._dagpb import pb_read_bytes, pb_read_varint, pb_varint

__all__ = [
    "AddResult",
    "DirEntry",
    "NodeInfo",
    "UnixFSData",
    "UnixFSType",
    "decode_unixfs",
    "encode_unixfs",
]

Kind = Literal["file", "directory", "symlink"]


class UnixFSType:
    """UnixFS ``DataType`` values."""

    RAW: Final = 0
    DIRECTORY: Final = 1
    FILE: Final = 2
    METADATA: Final = 3
    SYMLINK: Final = 4
    HAMT_SHARD: Final = 5


_TYPE_NAMES: Final = {0: "Raw", 1: "Directory", 2: "File", 3: "Metadata", 4: "Symlink", 5: "HAMTShard"}
_U32_MAX = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """A decoded UnixFS ``Data`` message. ``None`` means the optional field is absent.

    Attributes:
        type: a :class:`UnixFSType` value.
        data: file bytes (File/Raw), symlink target (Symlink) or HAMT bitfield (HAMTShard).
        filesize: total file bytes under this node (File/Raw).
        blocksizes: file bytes under each child link, in link order.
        hash_type: multihash code of the HAMT hash (HAMTShard: 0x22, murmur3-x64-64).
        fanout: HAMT fanout (HAMTShard).
        mode: POSIX permission bits (UnixFS 1.5).
        mtime: ``(seconds, nanoseconds or None)`` (UnixFS 1.5).
    """

    type: int
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: tuple[int, int | None] | None = None

    @property
    def type_name(self) -> str:
        """The spec's name for :attr:`type`."""
        return _TYPE_NAMES.get(self.type, str(self.type))


def encode_unixfs(msg: UnixFSData) -> bytes:
    """Encode a UnixFS Data message in field order, as Kubo does.

    Raises:
        InvalidInputError: a value is out of range for its protobuf type.
    """
    if msg.type not in _TYPE_NAMES:
        raise InvalidInputError(f"expected a UnixFS type in {sorted(_TYPE_NAMES)}, found {msg.type}")
    parts = [b"\x08", pb_varint(msg.type)]
    if msg.data is not None:
        parts += [b"\x12", pb_varint(len(msg.data)), msg.data]
    if msg.filesize is not None:
        parts += [b"\x18", pb_varint(msg.filesize)]
    for size in msg.blocksizes:
        parts += [b"\x20", pb_varint(size)]
    if msg.hash_type is not None:
        parts += [b"\x28", pb_varint(msg.hash_type)]
    if msg.fanout is not None:
        parts += [b"\x30", pb_varint(msg.fanout)]
    if msg.mode is not None:
        if not 0 <= msg.mode <= _U32_MAX:
            raise InvalidInputError(f"expected a uint32 UnixFS mode, found {msg.mode}")
        parts += [b"\x38", pb_varint(msg.mode)]
    if msg.mtime is not None:
        seconds, nanos = msg.mtime
        if not -(1 << 63) <= seconds < 1 << 63:
            raise InvalidInputError(f"expected int64 mtime seconds, found {seconds}")
        body = b"\x08" + pb_varint(seconds & ((1 << 64) - 1))
        if nanos is not None:
            if not 0 <= nanos <= _U32_MAX:
                raise InvalidInputError(f"expected fixed32 mtime nanoseconds, found {nanos}")
            body += b"\x15" + struct.pack("<I", nanos)
        parts += [b"\x42", pb_varint(len(body)), body]
    return b"".join(parts)


def _decode_mtime(data: bytes, pos: int, end: int) -> tuple[int, int | None]:
    seconds: int | None = None
    nanos: int | None = None
    last = 0
    while pos < end:
        key, pos = pb_read_varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if field <= last or field > 2:
            raise DecodeError(
                f"expected UnixTime fields Seconds=1, FractionalNanoseconds=2, found field {field}"
            )
        last = field
        if field == 1:
            if wire != 0:
                raise DecodeError(f"expected UnixTime.Seconds with wire type 0, found {wire}")
            raw, pos = pb_read_varint(data, pos, end)
            seconds = raw - (1 << 64) if raw >= 1 << 63 else raw
        else:
            if wire != 5:
                raise DecodeError(f"expected UnixTime.FractionalNanoseconds with wire type 5, found {wire}")
            if pos + 4 > end:
                raise DecodeError("expected 4 bytes of UnixTime.FractionalNanoseconds, found truncated data")
            (nanos,) = struct.unpack_from("<I", data, pos)
            pos += 4
    if seconds is None:
        raise DecodeError("expected UnixTime.Seconds, found a mtime without it")
    return seconds, nanos


def decode_unixfs(data: bytes) -> UnixFSData:
    """Decode a UnixFS Data message strictly.

    Raises:
        DecodeError: the bytes are not a canonical UnixFS Data message.
    """
    pos = 0
    end = len(data)
    last = 0
    values: dict[int, object] = {}
    blocksizes: list[int] = []
    while pos < end:
        key, pos = pb_read_varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if field < 1 or field > 8:
            raise DecodeError(f"expected UnixFS Data fields 1-8, found unknown field {field}")
        if field < last or (field == last and field != 4):
            raise DecodeError(
                f"expected UnixFS Data fields in ascending order, found field {field} after {last}"
            )
        last = field
        expected_wire = 2 if field in (2, 8) else 0
        if wire != expected_wire:
            raise DecodeError(f"expected UnixFS field {field} with wire type {expected_wire}, found {wire}")
        if wire == 2:
            start, pos = pb_read_bytes(data, pos, end)
            if field == 2:
                values[2] = bytes(data[start:pos])
            else:
                values[8] = _decode_mtime(data, start, pos)
        else:
            value, pos = pb_read_varint(data, pos, end)
            if field == 4:
                blocksizes.append(value)
            else:
                values[field] = value
    if 1 not in values:
        raise DecodeError("expected UnixFS Data.Type, found a message without it")
    type_ = values[1]
    assert isinstance(type_, int)
    if type_ not in _TYPE_NAMES:
        raise DecodeError(f"expected a UnixFS type in {sorted(_TYPE_NAMES)}, found {type_}")
    mode = values.get(7)
    if isinstance(mode, int) and mode > _U32_MAX:
        raise DecodeError(f"expected a uint32 UnixFS mode, found {mode}")
    return UnixFSData(
        type=type_,
        data=values.get(2),  # type: ignore[arg-type]
        filesize=values.get(3),  # type: ignore[arg-type]
        blocksizes=tuple(blocksizes),
        hash_type=values.get(5),  # type: ignore[arg-type]
        fanout=values.get(6),  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        mtime=values.get(8),  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True)
class AddResult:
    """What adding a file or directory produced.

    Attributes:
        cid: the root CID (Kubo's ``ipfs add`` result for the same settings).
        size: content bytes consumed (sum of file sizes).
        dag_size: cumulative size of the DAG (the Tsize a parent would record; Kubo's ``Size``).
        skipped_hidden: entries skipped because their name starts with a dot (``ipfs add -r``
            without ``-H``).
    """

    cid: CID
    size: int
    dag_size: int = 0
    skipped_hidden: int = 0


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One entry of a UnixFS directory listing.

    Attributes:
        name: the entry name.
        cid: the entry's root CID.
        size: file bytes for files, target length for symlinks, cumulative DAG size for directories.
        kind: ``"file"``, ``"directory"`` or ``"symlink"``.
    """

    name: str
    cid: CID
    size: int
    kind: Kind


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What :func:`stat` learns from a UnixFS root block.

    Attributes:
        cid: the node.
        kind: ``"file"``, ``"directory"`` or ``"symlink"``.
        size: file bytes for files, target length for symlinks, cumulative DAG size for directories.
        cumulative_size: block length plus the Tsize of every link (Kubo's CumulativeSize).
        block_size: length of the root block.
        links: number of links of the root block.
        sharded: True for a HAMT-sharded directory.
    """

    cid: CID
    kind: Kind
    size: int
    cumulative_size: int
    block_size: int
    links: int
    sharded: bool = False
