"""FSBlockStore: layout, atomic idempotent puts, verified reads, corruption, concurrency."""

from __future__ import annotations

import base64
import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cats_runtime.cas import (
    CID,
    DAG_CBOR,
    DAG_PB,
    IDENTITY,
    RAW,
    Block,
    BlockStore,
    CorruptBlock,
    FSBlockStore,
    PBLink,
    PBNode,
    dagcbor_encode,
    encode_pbnode,
)
from cats_runtime.errors import BlockNotFoundError, IntegrityError, StoreError


def raw_block(data: bytes) -> Block:
    return Block.encode(data, RAW)


def cbor_block(value: object) -> Block:
    return Block.encode(dagcbor_encode(value), DAG_CBOR)


def pb_block(children: list[Block], *, version: int = 1) -> Block:
    links = tuple(PBLink(c.cid, f"{i:04d}", len(c.data)) for i, c in enumerate(children))
    return Block.encode(encode_pbnode(PBNode(links, b"\x08\x01")), DAG_PB, version=version)


def _flip_byte(path: Path, offset: int = 0) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_implements_the_block_store_protocol(tmp_store: FSBlockStore) -> None:
    assert isinstance(tmp_store, BlockStore)


def test_put_get_round_trip(tmp_store: FSBlockStore) -> None:
    block = raw_block(b"hello")
    assert not tmp_store.has(block.cid)
    tmp_store.put(block)
    assert tmp_store.has(block.cid)
    assert block.cid in tmp_store
    assert tmp_store.get(block.cid) == b"hello"


def test_layout_is_sharded_by_next_to_last_two_chars_of_the_cidv1_key(tmp_store: FSBlockStore) -> None:
    block = raw_block(b"layout")
    tmp_store.put(block)
    key = base64.b32encode(block.cid.buffer).decode().rstrip("=")
    path = tmp_store.root / key[-3:-1] / f"{key}.data"
    assert tmp_store.path_of(block.cid) == path
    assert path.read_bytes() == b"layout"
    assert not stat.S_IMODE(path.stat().st_mode) & 0o222, "block files are read-only"
    assert (tmp_store.root / "SHARDING").read_text().startswith("cats/flatfs/v1")
    leftovers = [p for p in tmp_store.root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_put_is_idempotent_and_does_not_rewrite(tmp_store: FSBlockStore) -> None:
    block = raw_block(b"same")
    tmp_store.put(block)
    inode = tmp_store.path_of(block.cid).stat().st_ino
    tmp_store.put(block)
    tmp_store.put_many([block, block])
    assert tmp_store.path_of(block.cid).stat().st_ino == inode
    assert list(tmp_store) == [block.cid]


def test_cidv0_and_cidv1_share_one_file(tmp_store: FSBlockStore) -> None:
    v0 = pb_block([raw_block(b"x")], version=0)
    tmp_store.put(v0)
    v1 = v0.cid.to_v1()
    assert tmp_store.has(v1)
    assert tmp_store.get(v1) == v0.data
    assert tmp_store.path_of(v0.cid) == tmp_store.path_of(v1)
    assert list(tmp_store) == [v1]


def test_missing_block_raises_block_not_found(tmp_store: FSBlockStore) -> None:
    cid = raw_block(b"absent").cid
    with pytest.raises(BlockNotFoundError, match=f"block {cid} not found"):
        tmp_store.get(cid)


def test_iteration_keeps_codecs(tmp_store: FSBlockStore) -> None:
    blocks = [raw_block(b"r"), cbor_block({"k": 1}), pb_block([raw_block(b"q")])]
    tmp_store.put_many(blocks)
    assert sorted(tmp_store) == sorted(b.cid for b in blocks)
    assert {c.codec for c in tmp_store} == {RAW, DAG_CBOR, DAG_PB}


def test_flipped_byte_is_detected_on_get_and_by_verify(tmp_store: FSBlockStore) -> None:
    good, bad = raw_block(b"good block"), raw_block(b"bad block")
    tmp_store.put_many([good, bad])
    path = tmp_store.path_of(bad.cid)
    _flip_byte(path, 3)
    with pytest.raises(
        IntegrityError, match=rf"block {bad.cid} stored at {path} is corrupt: expected sha2-256"
    ):
        tmp_store.get(bad.cid)
    assert tmp_store.get(good.cid) == b"good block"
    report = tmp_store.verify()
    assert len(report) == 1
    assert report[0].cid == bad.cid
    assert report[0].path == path
    assert "expected sha2-256 digest" in report[0].reason


def test_verify_reports_truncated_and_foreign_files(tmp_store: FSBlockStore) -> None:
    block = raw_block(b"will be truncated")
    tmp_store.put(block)
    path = tmp_store.path_of(block.cid)
    os.chmod(path, 0o644)
    path.write_bytes(b"will")
    stray = tmp_store.root / "zz" / "NOTACID.data"
    stray.parent.mkdir()
    stray.write_bytes(b"?")
    report = {r.path: r for r in tmp_store.verify()}
    assert report[path].cid == block.cid
    assert "4 bytes" in report[path].reason
    assert report[stray] == CorruptBlock(None, stray, report[stray].reason)
    assert "expected a file named" in report[stray].reason
    assert list(tmp_store) == [block.cid]  # iteration skips foreign names


def test_put_repairs_a_file_of_the_wrong_size(tmp_store: FSBlockStore) -> None:
    block = raw_block(b"repair me please")
    tmp_store.put(block)
    path = tmp_store.path_of(block.cid)
    os.chmod(path, 0o644)
    path.write_bytes(b"short")
    tmp_store.put(block)
    assert tmp_store.get(block.cid) == b"repair me please"
    assert tmp_store.verify() == []


def test_delete(tmp_store: FSBlockStore) -> None:
    block = raw_block(b"to delete")
    tmp_store.put(block)
    tmp_store.delete(block.cid)
    assert not tmp_store.has(block.cid)
    with pytest.raises(BlockNotFoundError, match="not found"):
        tmp_store.delete(block.cid)


def test_identity_cids_are_inline_and_never_stored(tmp_store: FSBlockStore) -> None:
    cid = CID(1, RAW, IDENTITY, b"inline")
    block = Block.checked(cid, b"inline")
    tmp_store.put(block)
    assert tmp_store.has(cid)
    assert tmp_store.get(cid) == b"inline"
    assert list(tmp_store) == []


def test_a_different_layout_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "other"
    root.mkdir()
    (root / "SHARDING").write_text("/repo/flatfs/shard/v1/next-to-last/2\n")
    with pytest.raises(StoreError, match="expected block store layout"):
        FSBlockStore(root)


def test_write_failure_raises_store_error_and_leaves_no_temp_file(tmp_store: FSBlockStore) -> None:
    block = raw_block(b"cannot be written")
    shard = tmp_store.path_of(block.cid).parent
    shard.write_bytes(b"a file where the shard directory should be")
    with pytest.raises(StoreError, match=f"cannot (stat|write) block {block.cid}"):
        tmp_store.put(block)
    with pytest.raises(StoreError, match=f"cannot (stat|write) block {block.cid}"):
        tmp_store.put_many([raw_block(b"fine"), block])
    # The failed batch is abandoned whole: no temporary files, no partial blocks.
    assert list(tmp_store.root.rglob("*.tmp")) == []
    assert list(tmp_store) == []


def test_put_many_propagates_errors_from_the_producer(tmp_store: FSBlockStore) -> None:
    def produce() -> object:
        yield raw_block(b"first")
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        tmp_store.put_many(produce())  # type: ignore[arg-type]
    assert list(tmp_store) == []  # the unfinished batch is abandoned
    assert [p for p in tmp_store.root.rglob("*.tmp")] == []


def test_put_many_stores_many_blocks_durably_named(tmp_store: FSBlockStore) -> None:
    blocks = [raw_block(i.to_bytes(4, "big") * 1000) for i in range(300)]
    tmp_store.put_many(iter(blocks))
    assert sorted(tmp_store) == sorted(b.cid for b in blocks)
    assert all(tmp_store.get(b.cid) == b.data for b in blocks[::37])
    assert tmp_store.verify() == []


def test_remove_stale_temp_files(tmp_store: FSBlockStore) -> None:
    block = raw_block(b"x")
    tmp_store.put(block)
    shard = tmp_store.path_of(block.cid).parent
    stale = shard / ".KEY.1.abc.tmp"
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    fresh = shard / ".KEY.2.def.tmp"
    fresh.write_bytes(b"in progress")
    assert tmp_store.remove_stale_temp_files() == 1
    assert not stale.exists() and fresh.exists()
    assert list(tmp_store) == [block.cid]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), codec=st.sampled_from([RAW, DAG_CBOR, 0x0129]), version=st.just(1))
def test_round_trip_property(tmp_store: FSBlockStore, data: bytes, codec: int, version: int) -> None:
    block = Block.encode(data, codec, version=version)
    tmp_store.put(block)
    assert tmp_store.get(block.cid) == data
    assert block.cid in set(tmp_store)


# -- two real processes ---------------------------------------------------------------------


def _writer(root: str, worker: int, rounds: int) -> None:
    store = FSBlockStore(root)
    for r in range(rounds):
        shared = [Block.encode(f"shared {r} {i}".encode() * 500) for i in range(20)]
        own = [Block.encode(f"own {worker} {r} {i}".encode() * 500) for i in range(20)]
        store.put_many(shared + own)
        store.put(shared[0])
        for block in shared[:5]:
            assert store.get(block.cid) == block.data


def test_two_processes_adding_same_and_different_content(tmp_path: Path) -> None:
    root = tmp_path / "blocks"
    FSBlockStore(root)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(root), w, 5)) for w in range(2)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(120)
    finally:
        for p in procs:
            if p.is_alive():  # only our own children, by handle
                p.kill()
                p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    store = FSBlockStore(root)
    shared = {Block.encode(f"shared {r} {i}".encode() * 500).cid for r in range(5) for i in range(20)}
    own = {
        Block.encode(f"own {w} {r} {i}".encode() * 500).cid
        for w in range(2)
        for r in range(5)
        for i in range(20)
    }
    expected = shared | own
    assert set(store) == expected
    assert store.verify() == []
    assert list(root.rglob("*.tmp")) == []


def test_put_many_in_several_batches_and_a_failure_in_a_later_batch(
    tmp_store: FSBlockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cats_runtime.cas._blockstore as module

    monkeypatch.setattr(module, "_BATCH_FILES", 4)
    blocks = [raw_block(b"batched %d" % i) for i in range(30)]
    tmp_store.put_many(blocks)
    assert set(tmp_store) == {b.cid for b in blocks}

    poisoned = raw_block(b"poisoned")
    poisoned_path = tmp_store.path_of(poisoned.cid)
    poisoned_path.parent.mkdir(exist_ok=True)
    poisoned_path.mkdir()  # a directory where the block file goes: the rename fails
    more = [raw_block(b"more %d" % i) for i in range(30)]
    with pytest.raises(StoreError, match=f"cannot write block {poisoned.cid}"):
        tmp_store.put_many([*more[:10], poisoned, *more[10:]])
    assert list(tmp_store.root.rglob("*.tmp")) == []
    stored = set(tmp_store)
    assert {b.cid for b in more[:8]} <= stored  # batches synced before the failure stay
    assert poisoned.cid not in stored
    for cid in stored:
        assert tmp_store.get(cid)  # everything present is complete and verified
    report = tmp_store.verify()
    assert [(r.cid, r.path) for r in report] == [(None, poisoned_path)]
    assert "to be a regular file" in report[0].reason
