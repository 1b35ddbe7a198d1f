"""links_of and walk: codec dispatch, export order, each block once, verification."""

from __future__ import annotations

import os
from typing import Any

import pytest

from cats_runtime.cas import (
    CID,
    DAG_JSON,
    IDENTITY,
    RAW,
    Block,
    FSBlockStore,
    MemoryBlockStore,
    links_of,
    reachable,
    walk,
)
from cats_runtime.errors import BlockNotFoundError, DecodeError, IntegrityError, UnsupportedCodecError


def test_links_of_raw_is_empty(kit: type) -> None:
    block = kit.raw(b"leaf")
    assert links_of(block.cid, block.data) == []


def test_links_of_dag_pb_in_link_order(kit: type) -> None:
    a, b, c = kit.raw(b"a"), kit.raw(b"b"), kit.raw(b"c")
    node = kit.pb([c, a, b])
    assert links_of(node.cid, node.data) == [c.cid, a.cid, b.cid]


def test_links_of_dag_cbor_in_canonical_order(kit: type) -> None:
    a, b = kit.raw(b"a"), kit.raw(b"b")
    node = kit.cbor({"zz": a.cid, "b": {"x": [b.cid, a.cid]}, "s": "text"})
    # canonical DAG-CBOR key order: length first ("b" < "zz")
    assert links_of(node.cid, node.data) == [b.cid, a.cid, a.cid]


def test_links_of_unknown_codec() -> None:
    cid = CID.compute(b"{}", DAG_JSON)
    with pytest.raises(UnsupportedCodecError, match=r"expected a block codec in .* found dag-json"):
        links_of(cid, b"{}")


def test_links_of_malformed_dag_pb(kit: type) -> None:
    cid = CID.compute(b"\xff\xff", 0x70)
    with pytest.raises(DecodeError):
        links_of(cid, b"\xff\xff")


def test_walk_is_depth_first_preorder_each_block_once(dag: Any) -> None:
    store = MemoryBlockStore()
    store.put_many(dag.blocks)
    got = [block.cid for block in walk(store, dag.root.cid)]
    assert got == [b.cid for b in dag.export_order]
    assert len(got) == len(set(got))


def test_walk_yields_block_bytes_and_cidv0_spelling(dag: Any) -> None:
    store = MemoryBlockStore()
    store.put_many(dag.blocks)
    by_cid = {b.cid: b.data for b in walk(store, dag.root.cid)}
    assert by_cid[dag.pb_b.cid] == dag.pb_b.data
    assert dag.pb_b.cid.version == 0


def test_walk_missing_block(dag: Any) -> None:
    store = MemoryBlockStore()
    store.put_many(b for b in dag.blocks if b is not dag.leaf1)
    with pytest.raises(BlockNotFoundError, match=str(dag.leaf1.cid)):
        list(walk(store, dag.root.cid))


def test_walk_detects_a_corrupt_block_in_the_store(tmp_store: FSBlockStore, dag: Any) -> None:
    tmp_store.put_many(dag.blocks)
    path = tmp_store.path_of(dag.leaf2.cid)
    os.chmod(path, 0o644)
    path.write_bytes(b"LEAF TWO")
    with pytest.raises(IntegrityError, match=rf"{dag.leaf2.cid} stored at {path}"):
        list(walk(tmp_store, dag.root.cid))


def test_walk_of_an_identity_cid_needs_no_store() -> None:
    cid = CID(1, RAW, IDENTITY, b"tiny")
    assert [(b.cid, b.data) for b in walk(MemoryBlockStore(), cid)] == [(cid, b"tiny")]


class _CountingSource:
    def __init__(self, inner: MemoryBlockStore) -> None:
        self.inner = inner
        self.gets: list[CID] = []

    def get(self, cid: CID) -> bytes:
        self.gets.append(cid)
        return self.inner.get(cid)

    def has(self, cid: CID) -> bool:
        return self.inner.has(cid)


def test_reachable_reads_interior_nodes_only(dag: Any) -> None:
    store = MemoryBlockStore()
    store.put_many(dag.blocks)
    source = _CountingSource(store)
    live = reachable(source, [dag.root.cid])
    assert live == {b.cid.to_v1() for b in dag.blocks}
    assert all(cid.codec != RAW for cid in source.gets)
    assert len(source.gets) == 3


def test_reachable_names_the_missing_block_and_its_parent(dag: Any) -> None:
    store = MemoryBlockStore()
    store.put_many(b for b in dag.blocks if b is not dag.leaf2)
    with pytest.raises(
        BlockNotFoundError,
        match=rf"block {dag.leaf2.cid} \(linked from {dag.pb_b.cid}\) is missing",
    ):
        reachable(store, [dag.root.cid])


def test_walk_of_many_siblings_is_not_recursive(kit: type) -> None:
    store = MemoryBlockStore()
    chain: Block = kit.raw(b"bottom")
    store.put(chain)
    for _ in range(3000):  # a deep chain would overflow a recursive walker
        chain = kit.pb([chain])
        store.put(chain)
    assert sum(1 for _ in walk(store, chain.cid)) == 3001


def test_walk_tells_cidv0_and_cidv1_spellings_apart_like_kubo(kit: Any) -> None:
    child = kit.pb([kit.raw(b"x")], version=0)
    v1 = child.cid.to_v1()
    parent = kit.cbor({"a": child.cid, "b": v1})
    store = MemoryBlockStore()
    store.put_many([parent, child, kit.raw(b"x"), Block.checked(v1, child.data)])
    got = [b.cid for b in walk(store, parent.cid)]
    assert got == [parent.cid, child.cid, kit.raw(b"x").cid, v1]
