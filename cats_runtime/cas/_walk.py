"""Following links between blocks: the links of one block, and depth-first walks of a DAG."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..errors import BlockNotFoundError, UnsupportedCodecError
from ._cid import CID, DAG_CBOR, DAG_PB, IDENTITY, RAW, Block
from ._dagcbor import decode as decode_dagcbor
from ._dagcbor import iter_links
from ._dagpb import decode_pbnode
from ._store import BlockSource

__all__ = ["links_of", "reachable", "walk"]


def links_of(cid: CID, data: bytes) -> list[CID]:
    """The CIDs ``data`` (the block of ``cid``) links to, in link order.

    raw blocks have no links; dag-pb links come from the PBNode's ``Links`` in order;
    DAG-CBOR links are the tag-42 CIDs in canonical (encoded) order.

    Raises:
        UnsupportedCodecError: a codec CATs cannot decode.
        DecodeError: ``data`` is not valid for its codec.
    """
    codec = cid.codec
    if codec == RAW:
        return []
    if codec == DAG_PB:
        return [link.cid for link in decode_pbnode(data).links]
    if codec == DAG_CBOR:
        return list(iter_links(decode_dagcbor(data)))
    raise UnsupportedCodecError(
        f"expected a block codec in (raw, dag-pb, dag-cbor) to follow links of {cid}, found {cid.codec_name}"
    )


def _read(source: BlockSource, cid: CID) -> bytes:
    if cid.hash_code == IDENTITY:
        return cid.digest  # inline CIDs carry their own bytes
    return source.get(cid)


def walk(source: BlockSource, root: CID) -> Iterator[Block]:
    """Yield every block of the DAG under ``root``, depth-first pre-order, each block once.

    The order is the one ``ipfs dag export`` writes: the root, then each child subtree in link
    order. Blocks come from ``source.get``, which verifies them against their CIDs (the
    :class:`BlockSource` contract). Blocks are told apart by their full CID, as Kubo does:
    a DAG that links the same bytes as CIDv0 and as CIDv1 yields them under both.

    Raises:
        BlockNotFoundError: a block of the DAG is missing from ``source``.
        IntegrityError: a block does not match its CID.
        UnsupportedCodecError / DecodeError: a block cannot be decoded to find its links.
    """
    seen: set[CID] = set()
    stack: list[CID] = [root]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        data = _read(source, cid)
        yield Block._trusted(cid, data)
        stack.extend(reversed(links_of(cid, data)))


def reachable(
    source: BlockSource, roots: Iterable[CID], *, known_complete: Callable[[CID], bool] | None = None
) -> set[CID]:
    """The CIDv1 of every block reachable from ``roots``, checking that each one is present.

    Raw blocks (the leaves of files, usually almost all the bytes) are only checked with
    ``has``: they have no links, so reading and re-hashing them would cost a full pass over
    the data for nothing. Every block with links is read and verified.

    ``known_complete`` names sub-DAGs checked before (a pinned root): the walk does not descend
    into them, so pinning a run whose parents are pinned walks only the new blocks. Their blocks
    are then not in the result.

    Raises:
        BlockNotFoundError: a reachable block is missing (the message names it and its parent).
        IntegrityError: an interior block does not match its CID.
    """
    seen: set[CID] = set()
    stack: list[tuple[CID, CID | None]] = [(root, None) for root in roots]
    while stack:
        cid, parent = stack.pop()
        key = cid.to_v1()
        if key in seen:
            continue
        if known_complete is not None and parent is not None and known_complete(cid):
            continue
        if cid.codec == RAW:
            if cid.hash_code != IDENTITY and not source.has(cid):
                via = f" (linked from {parent})" if parent is not None else ""
                raise BlockNotFoundError(f"block {cid}{via} is missing: the DAG is incomplete")
            seen.add(key)
            continue
        try:
            data = _read(source, cid)
        except BlockNotFoundError as exc:
            via = f" (linked from {parent})" if parent is not None else ""
            raise BlockNotFoundError(f"block {cid}{via} is missing: the DAG is incomplete") from exc
        seen.add(key)
        stack.extend((child, cid) for child in reversed(links_of(cid, data)))
    return seen
