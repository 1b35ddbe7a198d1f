"""PackedBlockStore: packed small blocks, file large ones, crash safety, many processes, layout 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cats_runtime.cas import LAYOUT_VERSION, RAW, Block, FSBlockStore, PackedBlockStore, Repo
from cats_runtime.cas._packstore import _env as _packed_env
from cats_runtime.errors import BlockNotFoundError, CorruptBlockError, StoreError

_ROOT = str(Path(__file__).resolve().parents[2])


def _blocks(count: int, tag: str, size: int = 1500) -> list[Block]:
    return [Block.encode(f"{tag}-{i:07d}-".encode().ljust(size, b"x"), RAW) for i in range(count)]


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": _ROOT},
    )


def test_small_blocks_are_packed_and_large_ones_are_files(tmp_path: Path) -> None:
    store = PackedBlockStore(tmp_path / "b", pack_limit=4096)
    small, large = Block.encode(b"s" * 100, RAW), Block.encode(b"L" * 5000, RAW)
    store.put_many([small, large])
    assert not store.path_of(small.cid).exists() and store.path_of(large.cid).exists()
    assert store.get(small.cid) == small.data and store.get(large.cid) == large.data
    assert sorted(store) == sorted([small.cid, large.cid])
    assert store.size(small.cid) == 100 and store.size(large.cid) == 5000
    store.delete(small.cid)
    with pytest.raises(BlockNotFoundError):
        store.get(small.cid)
    with pytest.raises(BlockNotFoundError):
        store.delete(small.cid)


def test_a_packed_block_is_rehashed_on_every_read(tmp_path: Path) -> None:
    store = PackedBlockStore(tmp_path / "b")
    good, other = Block.encode(b"good", RAW), Block.encode(b"evil", RAW)
    store.put(good)
    _packed_env(store.packed_path, sync=True).write(
        lambda txn: txn.put(good.cid.to_v1().buffer, other.data), size=4
    )
    with pytest.raises(CorruptBlockError, match=str(good.cid)):
        store.get(good.cid)
    assert store.get_unverified(good.cid) == other.data
    assert [c.cid for c in store.verify()] == [good.cid]
    store.put(Block.encode(b"good", RAW))  # same size, wrong bytes: left for verify to report
    assert [c.cid for c in store.verify()] == [good.cid]


def test_put_many_rewrites_a_stored_block_of_the_wrong_size_among_new_ones(tmp_path: Path) -> None:
    store = PackedBlockStore(tmp_path / "b")
    stored, fresh = _blocks(50, "stored"), _blocks(50, "fresh")
    store.put_many(stored)
    truncated = stored[7]
    _packed_env(store.packed_path, sync=True).write(
        lambda txn: txn.put(truncated.cid.to_v1().buffer, truncated.data[:100]), size=100
    )
    assert [c.cid for c in store.verify()] == [truncated.cid]
    # One batch: blocks already there (one of them truncated), new ones, and a repeat.
    store.put_many([*stored, *fresh, fresh[0]])
    assert store.verify() == []
    assert all(store.get(b.cid) == b.data for b in [*stored, *fresh])


def test_iteration_streams_while_blocks_are_deleted(tmp_path: Path) -> None:
    store = PackedBlockStore(tmp_path / "b", sync=False)  # 3000 synced deletes would take long here
    blocks = _blocks(3000, "it")  # several scan chunks
    store.put_many(blocks)
    seen = []
    for cid in store:
        seen.append(cid)
        store.delete(cid)  # deleting behind the cursor neither skips nor repeats a block
    assert sorted(seen) == sorted(b.cid for b in blocks)
    assert list(store) == []


def test_many_small_blocks_take_few_inodes(tmp_path: Path) -> None:
    store = PackedBlockStore(tmp_path / "b")
    store.put_many(_blocks(100_000, "ino", size=64))
    assert store.check() == (100_000, [])
    files = sum(len(names) for _, _, names in os.walk(tmp_path))
    assert files < 10, files  # one file per block would be 100,000 files


_KILLED_WRITER = """
    import sys
    from cats_runtime.cas import RAW, Block, PackedBlockStore
    store = PackedBlockStore(sys.argv[1])
    for batch in range(1_000_000):
        store.put_many(
            Block.encode(f"kill-{batch}-{i}-".encode().ljust(1500, b"k"), RAW) for i in range(2000)
        )
        print(batch, flush=True)
"""


def test_kill_9_in_the_middle_of_put_many_leaves_whole_batches(tmp_path: Path) -> None:
    root = tmp_path / "b"
    PackedBlockStore(root)
    proc = _python(_KILLED_WRITER, str(root))
    assert proc.stdout is not None
    done = [int(proc.stdout.readline()) for _ in range(3)]
    os.kill(proc.pid, signal.SIGKILL)  # the fourth batch (or a later one) is being written
    proc.wait()
    proc.stdout.close()
    store = PackedBlockStore(root)
    store.remove_stale_temp_files()
    stored = set(store)
    for batch in range(done[-1] + 8):
        cids = {Block.encode(f"kill-{batch}-{i}-".encode().ljust(1500, b"k"), RAW).cid for i in range(2000)}
        present = len(cids & stored)
        if batch in done:
            assert present == 2000, batch
        assert present in (0, 2000), (batch, present)  # never a torn batch
    assert store.check()[1] == []
    store.put_many(_blocks(10, "after"))  # the writer's lock died with it: writes go on
    assert store.has(_blocks(1, "after")[0].cid)


_WRITER = """
    import sys
    from cats_runtime.cas import RAW, Block, PackedBlockStore
    store = PackedBlockStore(sys.argv[1])
    for round in range(5):
        store.put_many(
            Block.encode(f"{sys.argv[2]}-{round}-{i}".encode().ljust(900, b"w"), RAW) for i in range(1000)
        )
        store.put_many(  # the same blocks in both processes: a race, not a conflict
            Block.encode(f"shared-{round}-{i}".encode().ljust(900, b"s"), RAW) for i in range(1000)
        )
    print("ok", flush=True)
"""


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    root = tmp_path / "b"
    PackedBlockStore(root)
    procs = [_python(_WRITER, str(root), tag) for tag in ("one", "two")]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ["ok\n", "ok\n"]
    store = PackedBlockStore(root)
    assert store.check() == (3 * 5 * 1000, [])


def test_a_forked_child_is_refused_and_the_parent_goes_on(tmp_path: Path) -> None:
    store = PackedBlockStore(tmp_path / "b")
    store.put(Block.encode(b"parent", RAW))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must never use (or close) the parent's LMDB environment
        try:
            store.put(Block.encode(b"child", RAW))
            answer = b"used"
        except StoreError as exc:
            answer = b"refused" if "fork" in str(exc) else b"other"
        os.write(write, answer)
        os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"refused"
    assert not store.has(Block.encode(b"child", RAW).cid)
    store.put(Block.encode(b"after", RAW))
    assert store.get(Block.encode(b"after", RAW).cid) == b"after"


def test_a_layout_1_repository_is_read_in_place_and_upgraded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "version").write_text("1\n")
    (home / "pins").mkdir()
    old = _blocks(50, "old")
    FSBlockStore(home / "blocks").put_many(old)  # what the layout-1 code wrote
    repo = Repo.open(home)
    assert (home / "version").read_text().strip() == str(LAYOUT_VERSION)
    assert all(repo.blocks.get(b.cid) == b.data for b in old)
    assert sorted(repo.blocks) == sorted(b.cid for b in old)
    assert repo.verify().checked == 50 and repo.verify().corrupt == ()
    new = _blocks(5, "new")
    repo.blocks.put_many(new)
    assert not repo.blocks.path_of(new[0].cid).exists()  # new small blocks are packed
    assert repo.gc().removed == 55  # nothing pinned: old and new blocks both go
    assert list(repo.blocks) == []
