"""The block store interfaces every CAS backend implements, and an in-memory store."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

from ..errors import BlockNotFoundError
from ._cid import CID, Block

__all__ = ["BlockSource", "BlockStore", "MemoryBlockStore"]


@runtime_checkable
class BlockSource(Protocol):
    """Something blocks can be read from. ``get`` always returns verified bytes."""

    def get(self, cid: CID) -> bytes:
        """Return the block's bytes, verified against ``cid``.

        Raises:
            BlockNotFoundError: the source does not have the block.
            IntegrityError: the stored bytes do not match ``cid``.
        """
        ...

    def has(self, cid: CID) -> bool:
        """True when the block is available without fetching it from elsewhere."""
        ...


@runtime_checkable
class BlockStore(BlockSource, Protocol):
    """A block source that can also store blocks."""

    def put(self, block: Block) -> None:
        """Store a block (idempotent: storing the same block twice is a no-op)."""
        ...

    def put_many(self, blocks: Iterable[Block]) -> None:
        """Store many blocks; backends may batch their durability work."""
        ...


class MemoryBlockStore:
    """A thread-safe in-memory block store (tests, ``--only-hash`` dry runs, caches)."""

    def __init__(self) -> None:
        self._blocks: dict[CID, bytes] = {}
        self._lock = threading.Lock()

    def get(self, cid: CID) -> bytes:
        """Return the block's bytes, re-verified (memory can be corrupted by buggy callers too)."""
        try:
            data = self._blocks[cid]
        except KeyError:
            raise BlockNotFoundError(f"block {cid} not found in the memory store") from None
        cid.verify(data, source="memory store")
        return data

    def has(self, cid: CID) -> bool:
        """True when the block is in memory."""
        return cid in self._blocks

    def put(self, block: Block) -> None:
        """Store a verified block."""
        with self._lock:
            self._blocks[block.cid] = block.data

    def put_many(self, blocks: Iterable[Block]) -> None:
        """Store many verified blocks."""
        for block in blocks:
            self.put(block)

    def __iter__(self) -> Iterator[CID]:
        return iter(list(self._blocks))

    def __len__(self) -> int:
        return len(self._blocks)
