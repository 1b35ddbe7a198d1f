"""dups=y CARs cannot be made to stream without end by a DAG of stacked diamonds."""

from __future__ import annotations

import pytest

from cats_runtime.cas import DAG_CBOR, Block, MemoryBlockStore, _dagcbor
from cats_runtime.errors import LimitError
from cats_runtime.service import _gateway_routes


def test_repeated_blocks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryBlockStore()
    below = Block.encode(_dagcbor.encode({"leaf": True}), DAG_CBOR)
    store.put(below)
    for level in range(20):  # 2**20 paths to the leaf
        below = Block.encode(_dagcbor.encode({"a": below.cid, "b": below.cid, "level": level}), DAG_CBOR)
        store.put(below)
    unique = list(_gateway_routes._dag(store.get, below.cid, below.data, "all", False))
    assert len(unique) == 21
    monkeypatch.setattr(_gateway_routes, "_MAX_DUPLICATES", 1000)
    with pytest.raises(LimitError, match="repeated blocks"):
        for _ in _gateway_routes._dag(store.get, below.cid, below.data, "all", True):
            pass
