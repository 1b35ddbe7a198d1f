"""Kubo's HAMT-sharded UnixFS directories (read and write), and the murmur3 hash keying them.

A sharded directory is a tree of dag-pb nodes whose UnixFS Data has Type=HAMTShard, the
bitfield of occupied slots (big-endian) in Data, ``fanout`` slots and ``hashType`` 0x22
(murmur3-x64-64). Each link name starts with the slot index in upper-case hex, padded to the
width of ``fanout - 1``; a name that is only the prefix is a sub-shard, otherwise the rest is
the entry name. The slot of an entry at depth ``d`` is bits ``[d*k, (d+1)*k)`` (from the most
significant end) of the first 64 bits of murmur3-x64-128(name) read big-endian, ``k`` being
log2(fanout). The reader checks all of this, so a shard that Kubo would not produce is refused.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Final

import mmh3

from ..errors import DecodeError, LimitError
from ._cid import CID
from ._dagpb import PBLink, PBNode
from ._unixfs_pb import UnixFSData, UnixFSType

__all__ = [
    "HAMT_FANOUT",
    "MURMUR3_X64_64",
    "build_hamt",
    "build_hamt_sorted",
    "hamt_entries",
    "hamt_find",
    "hamt_key",
    "murmur3_x64_128",
    "murmur3_x64_64",
]

MURMUR3_X64_64: Final = 0x22
_MAX_FANOUT = 1 << 16  # Kubo uses 256; anything beyond this is not a real shard
_HEX_UPPER = re.compile(r"[0-9A-F]+")


def murmur3_x64_128(data: bytes) -> tuple[int, int]:
    """MurmurHash3 x64 128-bit with seed 0 (Austin Appleby's reference algorithm): ``(h1, h2)``.

    Computed by the ``mmh3`` extension: the pure-Python version cost 3.4 us per name, 10-15% of
    adding a directory of small files; tests check it against the reference vectors.
    """
    return mmh3.hash64(data, 0, signed=False)


def murmur3_x64_64(data: bytes) -> bytes:
    """The HAMT key hash (multihash 0x22): the first 64 bits of murmur3-x64-128, big-endian."""
    # The digest is h1 then h2, each little-endian: h1 big-endian is its first 8 bytes reversed.
    return mmh3.mmh3_x64_128_digest(data)[7::-1]


def _slot(name: bytes, depth: int, bits: int) -> int:
    start = depth * bits
    if start + bits > 64:
        raise DecodeError(f"expected a HAMT at most {64 // bits} levels deep, found depth {depth + 1}")
    value = int.from_bytes(murmur3_x64_64(name), "big")
    return (value >> (64 - start - bits)) & ((1 << bits) - 1)


def check_shard(unixfs: UnixFSData) -> int:
    """Validate a HAMTShard's parameters; returns its fanout."""
    fanout = unixfs.fanout
    if fanout is None or fanout < 2 or fanout > _MAX_FANOUT or fanout & (fanout - 1):
        raise DecodeError(
            f"expected a HAMT fanout that is a power of two up to {_MAX_FANOUT}, found {fanout}"
        )
    if unixfs.hash_type != MURMUR3_X64_64:
        raise DecodeError(f"expected HAMT hashType 0x22 (murmur3-x64-64), found {unixfs.hash_type!r}")
    return fanout


Loader = Callable[[CID], tuple[PBNode, UnixFSData]]


def hamt_entries(root: PBNode, unixfs: UnixFSData, load: Loader) -> Iterator[tuple[str, PBLink]]:
    """Every ``(name, link)`` entry of a sharded directory, in shard order, fully checked.

    Args:
        root: the shard's root node.
        unixfs: its decoded UnixFS Data (Type=HAMTShard).
        load: fetches and decodes a sub-shard (verified by the caller's block source).

    Raises:
        DecodeError: the shard is malformed or an entry sits in the wrong slot.
    """
    fanout = check_shard(unixfs)
    bits = fanout.bit_length() - 1
    pad = len(f"{fanout - 1:X}")
    stack: list[tuple[PBNode, UnixFSData, int]] = [(root, unixfs, 0)]
    while stack:
        node, data, depth = stack.pop()
        if check_shard(data) != fanout:
            raise DecodeError(f"expected sub-shards with fanout {fanout}, found {data.fanout}")
        bitfield = int.from_bytes(data.data or b"", "big")
        if bitfield >> fanout:
            raise DecodeError(f"expected a HAMT bitfield of {fanout} bits, found set bits beyond it")
        seen = 0
        last = -1
        children: list[tuple[PBNode, UnixFSData, int]] = []
        for link in node.links:
            label = link.name or ""
            prefix = label[:pad]
            if len(prefix) != pad or not _HEX_UPPER.fullmatch(prefix):
                raise DecodeError(
                    f"expected a HAMT link name starting with {pad} upper-case hex digits, found {label!r}"
                )
            index = int(prefix, 16)
            if index >= fanout or index <= last:
                raise DecodeError(
                    f"expected increasing HAMT slots below {fanout}, found {index} after {last}"
                )
            last = index
            seen |= 1 << index
            if len(label) == pad:
                sub_node, sub_data = load(link.cid)
                if sub_data.type != UnixFSType.HAMT_SHARD:
                    raise DecodeError(
                        f"expected a HAMTShard sub-shard at {link.cid}, found {sub_data.type_name}"
                    )
                children.append((sub_node, sub_data, depth + 1))
                continue
            name = label[pad:]
            if _slot(name.encode("utf-8"), depth, bits) != index:
                raise DecodeError(f"HAMT entry {name!r} is in slot {index}, which does not match its hash")
            yield name, link
        if seen != bitfield:
            raise DecodeError(
                "expected the HAMT bitfield to list exactly the occupied slots, found a mismatch"
            )
        stack.extend(reversed(children))


def hamt_find(root: PBNode, unixfs: UnixFSData, name: str, load: Loader) -> tuple[PBLink | None, list[CID]]:
    """Look ``name`` up in a sharded directory by its hash, loading only the shards on its way.

    Args:
        root: the shard's root node.
        unixfs: its decoded UnixFS Data (Type=HAMTShard).
        name: the entry name.
        load: fetches and decodes a sub-shard.

    Returns:
        The entry's link (None when absent) and the CIDs of the sub-shards traversed, in order
        (a verifying client needs those blocks to check the lookup).

    Raises:
        DecodeError: a shard on the way is malformed.
    """
    fanout = check_shard(unixfs)
    bits = fanout.bit_length() - 1
    pad = len(f"{fanout - 1:X}")
    raw = name.encode("utf-8")
    node, data, depth = root, unixfs, 0
    traversed: list[CID] = []
    while True:
        if check_shard(data) != fanout:
            raise DecodeError(f"expected sub-shards with fanout {fanout}, found {data.fanout}")
        prefix = f"{_slot(raw, depth, bits):0{pad}X}"
        found = next((link for link in node.links if (link.name or "")[:pad] == prefix), None)
        if found is None:
            return None, traversed
        label = found.name or ""
        if len(label) != pad:
            return (found if label[pad:] == name else None), traversed
        node, data = load(found.cid)
        if data.type != UnixFSType.HAMT_SHARD:
            raise DecodeError(f"expected a HAMTShard sub-shard at {found.cid}, found {data.type_name}")
        traversed.append(found.cid)
        depth += 1


HAMT_FANOUT: Final = 256
"""Kubo's fanout for sharded directories (8 bits of the hash per level)."""

Emit = Callable[[bytes], tuple[bytes, int]]


def build_hamt(
    entries: list[tuple[bytes, bytes, int]], emit: Emit, fanout: int = HAMT_FANOUT
) -> tuple[bytes, int]:
    """Build a sharded directory the way Kubo does for a directory that outgrew one block.

    Inserting names one by one into Kubo's HAMT gives one canonical shape: a slot holding one
    entry links to it (label = hex slot + name); a slot two or more entries hash to becomes a
    sub-shard (label = hex slot) keyed by the next bits. Building that shape directly from the
    full entry list gives the same blocks.

    Args:
        entries: ``(name bytes, binary CID, Tsize)`` per entry.
        emit: stores one dag-pb block, returns ``(binary CID, block length)``.
        fanout: slots per shard node (a power of two).

    Returns:
        ``(binary CID, cumulative size)`` of the root shard.
    """
    bits = fanout.bit_length() - 1
    pad = len(f"{fanout - 1:X}")
    # hashType 0x22 and fanout, encoded once: UnixFS fields 5 and 6.
    tail = b"\x28\x22\x30" + _uvarint(fanout)

    def build(items: list[tuple[bytes, bytes, int, int]], depth: int) -> tuple[bytes, int]:
        buckets: dict[int, list[tuple[bytes, bytes, int, int]]] = {}
        for item in items:
            start = depth * bits
            if start + bits > 64:
                raise LimitError("two entry names share all 64 murmur3 bits; Kubo would rehash, CATs cannot")
            buckets.setdefault((item[3] >> (64 - start - bits)) & (fanout - 1), []).append(item)
        parts: list[bytes] = []
        total = 0
        bitfield = 0
        for slot in sorted(buckets):
            bitfield |= 1 << slot
            group = buckets[slot]
            label = f"{slot:0{pad}X}".encode()
            if len(group) == 1:
                name, cid, tsize, _ = group[0]
                label += name
            else:
                cid, tsize = build(group, depth + 1)
            parts.append(_link(cid, label, tsize))
            total += tsize
        field = bitfield.to_bytes((bitfield.bit_length() + 7) // 8, "big")
        unixfs = b"\x08\x05" + (b"\x12" + _uvarint(len(field)) + field if field else b"") + tail
        block = b"".join(parts) + b"\x0a" + _uvarint(len(unixfs)) + unixfs
        cid, length = emit(block)
        return cid, length + total

    keyed = [(name, cid, tsize, int.from_bytes(murmur3_x64_64(name), "big")) for name, cid, tsize in entries]
    return build(keyed, 0)


def _uvarint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [bytes((i,)) for i in range(0x80)]


def _link(cid: bytes, name: bytes, tsize: int) -> bytes:
    body = (
        b"\x0a" + _uvarint(len(cid)) + cid + b"\x12" + _uvarint(len(name)) + name + b"\x18" + _uvarint(tsize)
    )
    return b"\x12" + _uvarint(len(body)) + body


SortedEntry = tuple[bytes, bytes, bytes, int]
"""``(8-byte big-endian murmur3 key, name bytes, binary CID, Tsize)`` of one HAMT entry."""


def hamt_key(name: bytes) -> bytes:
    """The 8-byte key that orders a HAMT's entries (sort by it, then :func:`build_hamt_sorted`)."""
    return murmur3_x64_64(name)


def build_hamt_sorted(
    entries: Iterable[SortedEntry], emit: Emit, fanout: int = HAMT_FANOUT
) -> tuple[bytes, int]:
    """:func:`build_hamt` over entries streamed in increasing key order, in bounded memory.

    A HAMT is a trie over the key bits, so entries sorted by key arrive shard by shard: each
    slot's entries are contiguous. Only the links of the shards on the current path are held
    (at most ``fanout`` per level, 64 / log2(fanout) levels), whatever the number of entries;
    the blocks are byte-identical to :func:`build_hamt`'s for the same entries.

    Args:
        entries: ``(key, name, binary CID, Tsize)`` sorted by ``key`` (see :func:`hamt_key`),
            at least two of them.
        emit: stores one dag-pb block, returns ``(binary CID, block length)``.
        fanout: slots per shard node (a power of two).

    Returns:
        ``(binary CID, cumulative size)`` of the root shard.

    Raises:
        LimitError: two names share all 64 key bits.
    """
    bits = fanout.bit_length() - 1
    pad = len(f"{fanout - 1:X}")
    tail = b"\x28\x22\x30" + _uvarint(fanout)
    mask = fanout - 1

    def build(items: Iterator[tuple[int, SortedEntry]], depth: int) -> tuple[bytes, int]:
        start = depth * bits
        if start + bits > 64:
            raise LimitError("two entry names share all 64 murmur3 bits; Kubo would rehash, CATs cannot")
        shift = 64 - start - bits
        parts: list[bytes] = []
        total = 0
        bitfield = 0
        for slot, group in itertools.groupby(items, key=lambda item: (item[0] >> shift) & mask):
            bitfield |= 1 << slot
            label = f"{slot:0{pad}X}".encode()
            # One group iterator, consumed once: two entries peeked, the rest chained behind.
            first = next(group)
            second = next(group, None)  # noqa: B031
            if second is None:
                _, (_, name, cid, tsize) = first
                label += name
            else:
                cid, tsize = build(itertools.chain((first, second), group), depth + 1)  # noqa: B031
            parts.append(_link(cid, label, tsize))
            total += tsize
        field = bitfield.to_bytes((bitfield.bit_length() + 7) // 8, "big")
        unixfs = b"\x08\x05" + (b"\x12" + _uvarint(len(field)) + field if field else b"") + tail
        block = b"".join(parts) + b"\x0a" + _uvarint(len(unixfs)) + unixfs
        cid, length = emit(block)
        return cid, length + total

    return build(((int.from_bytes(entry[0], "big"), entry) for entry in entries), 0)
