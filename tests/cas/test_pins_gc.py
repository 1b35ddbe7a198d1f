"""Repo layout, pins, garbage collection and its lock against concurrent adds."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from block_faults import tamper

from cats_runtime.cas import CID, DAG_CBOR, LAYOUT_VERSION, Block, PinStore, Repo, gc
from cats_runtime.errors import (
    BlockNotFoundError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    StoreError,
)

# -- repository layout ----------------------------------------------------------------------


def test_open_creates_the_layout(tmp_path: Path) -> None:
    repo = Repo.open(tmp_path / "home")
    home = tmp_path / "home"
    assert (home / "version").read_text() == f"{LAYOUT_VERSION}\n"
    assert (home / "blocks" / "SHARDING").is_file()
    assert (home / "pins" / "pins.sqlite").is_file()
    assert repo.home == home.absolute()
    assert repo.blocks.root == home.absolute() / "blocks"
    again = Repo.open(home)
    assert again.pins.ls() == []


def test_newer_layout_is_refused(tmp_path: Path) -> None:
    Repo.open(tmp_path)
    (tmp_path / "version").write_text(f"{LAYOUT_VERSION + 1}\n")
    with pytest.raises(StoreError, match=f"found {LAYOUT_VERSION + 1}: it was written by a newer CATs"):
        Repo.open(tmp_path)


def test_unreadable_version_is_refused(tmp_path: Path) -> None:
    Repo.open(tmp_path)
    (tmp_path / "version").write_text("flatfs-v9\n")
    with pytest.raises(StoreError, match=r"expected a layout version number .* found 'flatfs-v9'"):
        Repo.open(tmp_path)


def test_a_foreign_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("not a repo")
    with pytest.raises(StoreError, match=r"expected an empty directory or a CATs repository .*thesis.tex"):
        Repo.open(tmp_path)
    assert not (tmp_path / "version").exists()


def test_newer_pin_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    PinStore(tmp_path)
    with sqlite3.connect(tmp_path / "pins.sqlite") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="found 99"):
        PinStore(tmp_path)


# -- pins -----------------------------------------------------------------------------------


def test_pin_add_ls_remove(tmp_repo: Repo, dag: Any) -> None:
    tmp_repo.blocks.put_many(dag.blocks)
    pin = tmp_repo.pins.add(dag.root.cid, "dataset")
    assert pin.cid == dag.root.cid and pin.name == "dataset"
    assert dag.root.cid in tmp_repo.pins
    assert [(p.cid, p.name) for p in tmp_repo.pins.ls()] == [(dag.root.cid, "dataset")]
    tmp_repo.pins.add(dag.root.cid, "renamed")
    assert [p.name for p in tmp_repo.pins.ls()] == ["renamed"]
    assert len(tmp_repo.pins) == 1
    tmp_repo.pins.remove(dag.root.cid)
    assert dag.root.cid not in tmp_repo.pins
    with pytest.raises(NotFoundError, match=f"expected {dag.root.cid} to be pinned"):
        tmp_repo.pins.remove(dag.root.cid)


def test_cidv0_and_cidv1_are_one_pin(tmp_repo: Repo, dag: Any) -> None:
    tmp_repo.blocks.put_many(dag.blocks)
    tmp_repo.pins.add(dag.pb_b.cid)
    assert dag.pb_b.cid.to_v1() in tmp_repo.pins
    assert tmp_repo.pins.ls()[0].cid == dag.pb_b.cid  # shown as pinned (CIDv0)
    tmp_repo.pins.add(dag.pb_b.cid.to_v1())
    assert len(tmp_repo.pins) == 1


def test_pin_of_an_incomplete_dag_names_the_missing_block(tmp_repo: Repo, dag: Any) -> None:
    tmp_repo.blocks.put_many(b for b in dag.blocks if b is not dag.leaf1)
    with pytest.raises(BlockNotFoundError, match=rf"block {dag.leaf1.cid} \(linked from {dag.pb_a.cid}\)"):
        tmp_repo.pins.add(dag.root.cid)
    assert tmp_repo.pins.ls() == []
    absent = CID.compute(b"nowhere", DAG_CBOR)
    with pytest.raises(BlockNotFoundError, match=f"block {absent} is missing: the DAG is incomplete"):
        tmp_repo.pins.add(absent)


def test_pin_name_must_be_one_line(tmp_repo: Repo, dag: Any) -> None:
    tmp_repo.blocks.put_many(dag.blocks)
    with pytest.raises(InvalidInputError, match="one-line pin name"):
        tmp_repo.pins.add(dag.root.cid, "two\nlines")


# -- garbage collection ---------------------------------------------------------------------


def test_gc_keeps_pinned_dags_and_removes_the_rest(tmp_repo: Repo, kit: Any) -> None:
    kept, gone = kit.Dag(b"kept"), kit.Dag(b"gone")
    shared = kept.leaf0
    unpinned_parent = kit.pb([shared, gone.leaf1])  # shares a leaf with the pinned DAG
    stray = kit.raw(b"stray")
    tmp_repo.blocks.put_many([*kept.blocks, *gone.blocks, unpinned_parent, stray])
    tmp_repo.pins.add(kept.root.cid, "keep")
    result = tmp_repo.gc(list_removed=True)
    remaining = set(tmp_repo.blocks)
    assert remaining == {b.cid.to_v1() for b in kept.blocks}
    expected_gone = {b.cid.to_v1() for b in [*gone.blocks, unpinned_parent, stray]}
    assert set(result.removed_cids) == expected_gone
    assert result.removed == len(expected_gone)
    assert result.kept == len(kept.blocks)
    assert result.bytes_freed == sum(len(b.data) for b in [*gone.blocks, unpinned_parent, stray])
    for block in kept.blocks:
        assert tmp_repo.blocks.get(block.cid) == block.data


def test_gc_with_no_pins_empties_the_store(tmp_repo: Repo, dag: Any) -> None:
    tmp_repo.blocks.put_many(dag.blocks)
    assert gc(tmp_repo.blocks, tmp_repo.pins).removed == len(dag.blocks)
    assert list(tmp_repo.blocks) == []


def test_gc_refuses_when_a_pinned_dag_is_incomplete(tmp_repo: Repo, dag: Any, kit: Any) -> None:
    tmp_repo.blocks.put_many([*dag.blocks, kit.raw(b"garbage")])
    tmp_repo.pins.add(dag.root.cid)
    tmp_repo.blocks.delete(dag.pb_a.cid)  # e.g. removed by hand
    before = set(tmp_repo.blocks)
    with pytest.raises(BlockNotFoundError, match=f"gc refused, nothing deleted: block {dag.pb_a.cid}"):
        tmp_repo.gc()
    assert set(tmp_repo.blocks) == before


def test_gc_refuses_when_an_interior_block_is_corrupt(tmp_repo: Repo, dag: Any) -> None:
    tmp_repo.blocks.put_many(dag.blocks)
    tmp_repo.pins.add(dag.root.cid)
    tamper(tmp_repo.blocks, dag.pb_a.cid, dag.pb_b.data)
    before = set(tmp_repo.blocks)
    with pytest.raises(IntegrityError, match=str(dag.pb_a.cid)):
        tmp_repo.gc()
    assert set(tmp_repo.blocks) == before


def test_gc_waits_for_an_add_holding_the_write_lock(tmp_repo: Repo, dag: Any) -> None:
    added = threading.Event()
    release = threading.Event()

    def add() -> None:
        with tmp_repo.write_lock():
            tmp_repo.blocks.put_many(dag.blocks)
            added.set()
            release.wait(10)
            tmp_repo.pins.add(dag.root.cid)

    adder = threading.Thread(target=add)
    adder.start()
    assert added.wait(10)
    results: list[Any] = []
    collector = threading.Thread(target=lambda: results.append(tmp_repo.gc()))
    collector.start()
    time.sleep(0.3)
    assert collector.is_alive(), "gc must wait while an add holds the write lock"
    assert results == []
    release.set()
    adder.join(10)
    collector.join(10)
    assert results[0].removed == 0
    assert set(tmp_repo.blocks) == {b.cid.to_v1() for b in dag.blocks}


def _adder_process(home: str, ready: Any, go: Any) -> None:
    repo = Repo.open(home)
    blocks = [Block.encode(f"process block {i}".encode()) for i in range(50)]
    with repo.write_lock():
        repo.blocks.put_many(blocks)
        ready.set()
        go.wait(20)
        for block in blocks:
            repo.pins.add(block.cid, "proc")


def test_gc_in_another_process_does_not_delete_an_add_in_progress(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = Repo.open(home)
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_adder_process, args=(str(home), ready, go))
    proc.start()
    try:
        assert ready.wait(30)
        results: list[Any] = []
        collector = threading.Thread(target=lambda: results.append(repo.gc()))
        collector.start()
        time.sleep(0.3)
        assert collector.is_alive()
        go.set()
        proc.join(30)
        collector.join(30)
    finally:
        go.set()
        proc.join(60)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert proc.exitcode == 0
    assert results[0].removed == 0
    assert len(set(repo.blocks)) == 50
    assert len(repo.pins) == 50


def test_writers_share_the_lock(tmp_repo: Repo) -> None:
    with tmp_repo.write_lock():
        entered = threading.Event()

        def other() -> None:
            with tmp_repo.write_lock():
                entered.set()

        t = threading.Thread(target=other)
        t.start()
        assert entered.wait(5), "two writers must be able to hold the lock together"
        t.join()


def test_repo_verify_counts_and_lists_corrupt_blocks(tmp_repo: Repo, dag: Any) -> None:
    tmp_repo.blocks.put_many(dag.blocks)
    assert tmp_repo.verify().checked == len(dag.blocks)
    assert tmp_repo.verify().corrupt == ()
    tamper(tmp_repo.blocks, dag.leaf0.cid, b"tampered")
    report = tmp_repo.verify()
    assert [(c.cid, c.path) for c in report.corrupt] == [(dag.leaf0.cid, tmp_repo.blocks.packed_path)]


def test_pinning_a_chain_walks_each_block_once(tmp_path: Path) -> None:
    """Pinning run D of a chain checks its new blocks down to its pinned parent, not through it."""
    from cats_runtime.cas import MemoryBlockStore
    from cats_runtime.cas._dagcbor import encode

    class Counting(MemoryBlockStore):
        reads = 0

        def get(self, cid: CID) -> bytes:
            Counting.reads += 1
            return super().get(cid)

    store = Counting()
    pins = PinStore(tmp_path / "pins", source=store)
    parent: CID | None = None
    depth = 300
    for i in range(depth):
        leaf = Block.encode(f"output {i}".encode())
        store.put(leaf)
        block = Block.encode(
            encode({"n": i, "output": leaf.cid, "parents": [parent] if parent else []}), DAG_CBOR
        )
        store.put(block)
        pins.add(block.cid, f"run {i}")
        parent = block.cid
    assert Counting.reads <= 2 * depth  # one record read per pin (was depth^2 / 2 = 45,000)
    # A DAG whose pinned part is complete but whose new part is not is still refused.
    missing = Block.encode(b"never stored")
    orphan = Block.encode(encode({"output": missing.cid, "parents": [parent]}), DAG_CBOR)
    store.put(orphan)
    with pytest.raises(BlockNotFoundError, match="is missing"):
        pins.add(orphan.cid)
