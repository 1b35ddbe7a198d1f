"""PackedBlockStore's LMDB map: it starts small and grows on demand, under readers and across processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import lmdb
import pytest

from cats_runtime.cas import RAW, Block, PackedBlockStore, _packstore
from cats_runtime.errors import StoreError

_ROOT = str(Path(__file__).resolve().parents[2])
_MIB = 1 << 20


def _blocks(count: int, tag: str, size: int = 2000) -> list[Block]:
    return [Block.encode(f"{tag}-{i:07d}-".encode().ljust(size, b"g"), RAW) for i in range(count)]


def _run(code: str, *args: str, map_gib: str | None = None) -> str:
    """Run ``code`` in a new Python process (spawned, never forked) and return its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "CATS_LMDB_MAP_GIB"}
    if map_gib is not None:
        env["CATS_LMDB_MAP_GIB"] = map_gib
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PYTHONPATH": _ROOT},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def tiny_map(monkeypatch: pytest.MonkeyPatch) -> int:
    """Stores opened in this test start with a 1 MiB map (the default is 1 GiB)."""
    monkeypatch.setattr(_packstore, "_MAP_SIZE", _MIB)
    return _MIB


def test_put_many_grows_a_tiny_map_and_every_block_reads_back(tmp_path: Path, tiny_map: int) -> None:
    store = PackedBlockStore(tmp_path / "b")
    env = _packstore._env(store.packed_path, sync=True)
    assert env.map_size == tiny_map
    blocks = _blocks(20_000, "grow")  # 40 MB: a map 40 times too small, several batches
    store.put_many(blocks)
    data_file = (store.packed_path / "data.mdb").stat().st_size
    assert data_file > 40 * tiny_map and env.map_size >= data_file
    assert all(store.get(b.cid) == b.data for b in blocks)
    assert store.check() == (20_000, [])
    store.delete_many(b.cid for b in blocks[::2])  # a generator: a retried delete must not lose it
    assert sorted(store) == sorted(b.cid for b in blocks[1::2])


def test_a_reopened_store_starts_with_twice_its_data(tmp_path: Path, tiny_map: int) -> None:
    root = tmp_path / "b"
    store = PackedBlockStore(root)
    store.put_many(_blocks(3000, "reopen"))
    on_disk = (store.packed_path / "data.mdb").stat().st_size
    out = _run(
        """
        import sys
        from cats_runtime.cas import PackedBlockStore, _packstore
        _packstore._MAP_SIZE = 1 << 20
        store = PackedBlockStore(sys.argv[1])
        print(_packstore._env(store.packed_path, sync=True).map_size)
        """,
        str(root),
    )
    assert int(out) >= 2 * on_disk > 4 * tiny_map


def test_cats_lmdb_map_gib_sets_the_starting_size(tmp_path: Path) -> None:
    code = """
        import sys
        from cats_runtime.cas import PackedBlockStore, _packstore
        store = PackedBlockStore(sys.argv[1])
        print(_packstore._env(store.packed_path, sync=True).map_size)
    """
    assert int(_run(code, str(tmp_path / "default"))) == 1 << 30
    assert int(_run(code, str(tmp_path / "set"), map_gib="3")) == 3 << 30


def test_readers_in_other_threads_see_right_bytes_while_the_map_grows(tmp_path: Path, tiny_map: int) -> None:
    store = PackedBlockStore(tmp_path / "b", sync=False)  # 150 synced commits would only be slow
    env = _packstore._env(store.packed_path, sync=False)
    old = _blocks(200, "old")
    store.put_many(old)
    expected = {b.cid: b.data for b in old}
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0, 0, 0, 0]

    def reader(kind: int) -> None:
        try:
            while not stop.is_set():
                if kind == 0:
                    for b in old:
                        assert store.get(b.cid) == b.data
                elif kind == 1:
                    assert all(store.has(b.cid) for b in old)
                elif kind == 2:
                    seen = list(store)  # blocks the writer adds may be seen or not; old ones must
                    assert set(expected) <= set(seen), "iteration lost blocks"
                else:
                    checked, corrupt = store.check()  # hashes memoryviews straight from the map
                    assert corrupt == [] and checked >= len(old)
                reads[kind] += 1
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(kind,)) for kind in range(4)]
    for t in threads:
        t.start()
    sizes = {env.map_size}
    new: list[Block] = []
    try:
        for round_ in range(150):  # 30 MB in small puts: the map doubles many times under the readers
            batch = _blocks(100, f"new{round_}")
            store.put_many(batch)
            new += batch
            sizes.add(env.map_size)
            if errors:
                break
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert len(sizes) >= 5, sizes  # 1 MiB grew at least 4 times while the readers ran
    assert all(reads), reads
    assert all(store.get(b.cid) == b.data for b in new)
    assert store.check() == (len(old) + len(new), [])


def test_a_writer_that_fills_the_map_while_another_thread_remaps_does_not_deadlock(
    tmp_path: Path, tiny_map: int
) -> None:
    env = _packstore._env(PackedBlockStore(tmp_path / "b").packed_path, sync=True)
    blocks = _blocks(2000, "during")  # 4 MB: fills the 1 MiB map
    inside, go = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def work(txn: lmdb.Transaction) -> None:
        if not inside.is_set():
            inside.set()
            go.wait(30)
        for b in blocks:
            txn.put(b.cid.to_v1().buffer, b.data)

    def write() -> None:
        try:
            env.write(work, size=len(blocks) * 2000)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    assert inside.wait(30)
    # As a thread adopting another process's growth does: it takes the remap lock, holds new
    # transactions off and waits for the open one, the writer's, to end. The writer fills the
    # map meanwhile: it must abort and leave the gate, not wait for the remap lock inside it.
    with env._remap_lock:
        env.resizing = True
        try:
            go.set()
            deadline = time.monotonic() + 30
            while env.active and time.monotonic() < deadline:
                time.sleep(0.001)
            assert not env.active, "the writer held its transaction open while waiting for the remap"
        finally:
            env.resizing = False
    writer.join(60)
    assert not writer.is_alive() and failures == []
    with env.read() as txn:
        assert all(txn.get(b.cid.to_v1().buffer) == b.data for b in blocks)


_GROW = """
    import sys
    from cats_runtime.cas import RAW, Block, PackedBlockStore, _packstore
    _packstore._MAP_SIZE = 1 << 20
    store = PackedBlockStore(sys.argv[1])
    opened = _packstore._env(store.packed_path, sync=True).map_size
    tag = sys.argv[2]
    store.put_many(
        Block.encode(f"{tag}-{i:07d}-".encode().ljust(2000, b"g"), RAW) for i in range(int(sys.argv[3]))
    )
    print(opened, _packstore._env(store.packed_path, sync=True).map_size)
"""


def test_a_process_reads_and_writes_after_another_grew_the_file_past_its_map(
    tmp_path: Path, tiny_map: int
) -> None:
    root = tmp_path / "b"
    store = PackedBlockStore(root)  # this process: opened first, with a 1 MiB map
    env = _packstore._env(store.packed_path, sync=True)
    mine = _blocks(100, "a1")
    store.put_many(mine)
    assert env.map_size == tiny_map
    _, b_map = map(int, _run(_GROW, str(root), "b1", "10000").split())  # 20 MB from process B
    data_file = (store.packed_path / "data.mdb").stat().st_size
    assert env.map_size < 10 * tiny_map < data_file <= b_map
    # Reads first: every read transaction begins with MDB_MAP_RESIZED until the map is adopted.
    theirs = _blocks(10_000, "b1")
    assert all(store.has(b.cid) for b in theirs[::100])
    assert all(store.get(b.cid) == b.data for b in theirs)
    assert env.map_size >= data_file
    adopted = env.map_size
    # Then writes: B grows the file far past this map again, and this process writes next.
    b_opened, _ = map(int, _run(_GROW, str(root), "b2", "15000").split())
    assert b_opened >= 2 * data_file  # B started from twice the file it found
    assert adopted < (store.packed_path / "data.mdb").stat().st_size
    more = _blocks(5000, "a2")
    store.put_many(more)
    everything = mine + theirs + _blocks(15_000, "b2") + more
    assert all(store.get(b.cid) == b.data for b in everything)
    out = _run(
        """
        import sys
        from cats_runtime.cas import PackedBlockStore
        print(PackedBlockStore(sys.argv[1]).check())
        """,
        str(root),
    )
    assert out.strip() == f"({len(everything)}, [])"


_DISK_FULL = """
    import json, sys
    from cats_runtime.cas import RAW, Block, PackedBlockStore, _packstore
    from cats_runtime.errors import StoreError
    print("mounted", flush=True)
    _packstore._MAP_SIZE = 1 << 20  # the map grows several times before the disk is full

    def batch(n):
        return [Block.encode(f"full-{n}-{i}-".encode().ljust(2000, b"f"), RAW) for i in range(250)]

    store = PackedBlockStore(sys.argv[1] + "/b")
    done, error = [], ""
    for n in range(100):  # 500 KB a batch into a 6 MiB file system
        try:
            store.put_many(batch(n))
        except StoreError as exc:
            error = str(exc)
            break
        done.append(n)
    failed = [b.cid for b in batch(len(done))]
    present_failed = sum(store.has(cid) for cid in failed)
    whole = all(store.get(b.cid) == b.data for n in done for b in batch(n))
    checked, corrupt = store.check()
    # The store goes on after a full disk: deletes free pages that later batches reuse (LMDB
    # reuses the pages a transaction freed from the second transaction after it on).
    store.delete_many(b.cid for n in done[:3] for b in batch(n))
    store.delete_many(b.cid for n in done[3:4] for b in batch(n))
    store.put_many(batch(1000))
    print(json.dumps({
        "done": len(done), "error": error, "present_failed": present_failed, "whole": whole,
        "checked": checked, "corrupt": len(corrupt), "after": all(store.has(b.cid) for b in batch(1000)),
    }))
"""


def test_a_full_disk_is_a_store_error_and_the_failed_batch_is_not_half_written(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs util-linux unshare to mount a small tmpfs in a user namespace")
    mount = tmp_path / "small"
    mount.mkdir()
    shell = 'mount -t tmpfs -o size=6m tmpfs "$1" && exec "$2" -c "$3" "$1"'
    command = [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", shell, "sh", str(mount)]
    done = subprocess.run(
        [*command, sys.executable, textwrap.dedent(_DISK_FULL)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": _ROOT},
        check=False,
    )
    if not done.stdout.startswith("mounted"):
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert 3 < result["done"] < 12, result  # the disk, not the 1 MiB map, ended the writes
    assert "the disk is full" in result["error"], result
    assert result["present_failed"] == 0  # all or nothing: one transaction per batch
    assert result["whole"] and result["corrupt"] == 0 and result["checked"] == 250 * result["done"]
    assert result["after"]


def test_a_write_that_outgrows_every_remap_ends_in_a_store_error(
    tmp_path: Path, tiny_map: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_packstore, "_MAX_REMAPS", 2)
    env = _packstore._env(PackedBlockStore(tmp_path / "b").packed_path, sync=True)
    blocks = _blocks(5000, "huge")  # 10 MB in one transaction

    def put_all(txn: lmdb.Transaction) -> None:
        for b in blocks:
            txn.put(b.cid.to_v1().buffer, b.data)

    # size=0 hides the transaction's size, so each remap only doubles the map: 1, 2, 4 MiB.
    with pytest.raises(
        StoreError, match=r"to fit its map after 2 remaps, found it still growing past 4194304"
    ):
        env.write(put_all, size=0)
    with env.read() as txn:
        assert txn.get(blocks[0].cid.to_v1().buffer) is None  # nothing of it was written
    assert env.write(put_all, size=len(blocks) * 2000) is None  # with its size, it fits at once
    assert env.map_size > 20 * tiny_map
