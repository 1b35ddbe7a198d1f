"""Benchmark: embedded engines for small blocks — SQLite BLOBs (WAL) vs LMDB vs one file per block.

For each engine and size, durable batched ingest of N blocks (CID bytes -> block bytes), then
reading every block back and re-hashing it with sha256 (a verified read). Baseline in the same
run: sha256 of the same bytes held in memory (the floor any verified store pays). Durable means
the batch is on disk when the call returns: SQLite ``synchronous=FULL`` commit (WAL fsync),
LMDB ``sync=True`` commit (msync/fdatasync), files fsynced through FSBlockStore.put_many
(batched syncfs). Also reports the on-disk size and the size after deleting half the blocks
(does the engine give space back, or reuse it?).

LMDB is optional (``pip install lmdb``); without it that row is skipped.

usage: python benchmarks/bench_block_engines.py [--blocks 10000 100000] [--size-min 1024]
       [--size-max 4096] [--batch 4096] [--dir TMPDIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_add import machine

from cats_runtime.cas import RAW, Block, FSBlockStore


def make_blocks(count: int, lo: int, hi: int) -> list[Block]:
    rng = random.Random(7)
    return [Block.encode(rng.randbytes(rng.randrange(lo, hi + 1)), RAW) for _ in range(count)]


def disk_usage(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def sqlite_engine(root: Path, blocks: list[Block], batch: int) -> tuple[float, float, int, int]:
    db = sqlite3.connect(root / "blocks.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE b (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
    start = time.perf_counter()
    for i in range(0, len(blocks), batch):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT OR IGNORE INTO b VALUES (?, ?)", [(b.cid.buffer, b.data) for b in blocks[i : i + batch]]
        )
        db.execute("COMMIT")
    put = time.perf_counter() - start
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    start = time.perf_counter()
    for b in blocks:
        row = db.execute("SELECT v FROM b WHERE k = ?", (b.cid.buffer,)).fetchone()
        assert hashlib.sha256(row[0]).digest() == b.cid.digest
    get = time.perf_counter() - start
    size = disk_usage(root)
    db.execute("BEGIN IMMEDIATE")
    db.executemany("DELETE FROM b WHERE k = ?", [(b.cid.buffer,) for b in blocks[::2]])
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = disk_usage(root)  # freed pages are reused by later inserts; VACUUM gives them back
    db.close()
    return put, get, size, after


def lmdb_engine(root: Path, blocks: list[Block], batch: int) -> tuple[float, float, int, int]:
    import lmdb  # type: ignore[import-not-found,unused-ignore]

    # A raw engine measure, one thread, a fixed 16 GiB map: its data (a few hundred MB at the
    # defaults) never needs the growth and gate of cats_runtime.cas._packstore, and it closes
    # the environment when done.
    env: Any = lmdb.open(str(root / "lmdb"), map_size=1 << 34, sync=True, metasync=True)
    start = time.perf_counter()
    for i in range(0, len(blocks), batch):
        with env.begin(write=True) as txn:
            for b in blocks[i : i + batch]:
                txn.put(b.cid.buffer, b.data, overwrite=False)
    put = time.perf_counter() - start
    start = time.perf_counter()
    with env.begin() as txn:
        for b in blocks:
            assert hashlib.sha256(txn.get(b.cid.buffer)).digest() == b.cid.digest
    get = time.perf_counter() - start
    size = disk_usage(root)
    with env.begin(write=True) as txn:
        for b in blocks[::2]:
            txn.delete(b.cid.buffer)
    after = disk_usage(root)  # LMDB never shrinks its file; freed pages are reused
    env.close()
    return put, get, size, after


def files_engine(root: Path, blocks: list[Block], batch: int) -> tuple[float, float, int, int]:
    store = FSBlockStore(root / "fs")
    start = time.perf_counter()
    store.put_many(blocks)
    put = time.perf_counter() - start
    start = time.perf_counter()
    for b in blocks:
        store.get(b.cid)
    get = time.perf_counter() - start
    size = disk_usage(root)
    for b in blocks[::2]:
        store.delete(b.cid)
    return put, get, size, disk_usage(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--size-min", type=int, default=1024)
    parser.add_argument("--size-max", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=4096, help="blocks per transaction")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--no-files", action="store_true", help="skip the one-file-per-block row")
    args = parser.parse_args()
    engines: dict[str, Callable[[Path, list[Block], int], tuple[float, float, int, int]]] = {
        "sqlite": sqlite_engine
    }
    try:
        import lmdb  # type: ignore[import-not-found,unused-ignore]  # noqa: F401

        engines["lmdb"] = lmdb_engine
    except ImportError:
        print("lmdb: skipped (pip install lmdb)")
    if not args.no_files:
        engines["files"] = files_engine
    print(f"machine: {machine()}")
    for count in args.blocks:
        blocks = make_blocks(count, args.size_min, args.size_max)
        nbytes = sum(len(b.data) for b in blocks)
        start = time.perf_counter()
        for b in blocks:
            hashlib.sha256(b.data).digest()
        base = time.perf_counter() - start
        print(
            f"\n{count} blocks of {args.size_min}-{args.size_max} B ({nbytes / 2**20:.1f} MiB), "
            f"batch {args.batch}; sha256 alone {count / base:,.0f} blocks/s"
        )
        for name, engine in engines.items():
            tmp = Path(tempfile.mkdtemp(prefix=f"cats-bench-eng-{name}-", dir=args.dir))
            try:
                put, get, size, after = engine(tmp, blocks, args.batch)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            print(
                f"  {name:7s} put {count / put:9,.0f} blocks/s ({nbytes / put / 2**20:6.1f} MiB/s, "
                f"{base / put:.3f}x sha256)  verified get {count / get:9,.0f} blocks/s "
                f"({base / get:.3f}x)  disk {size / 2**20:7.1f} MiB, after deleting half "
                f"{after / 2**20:7.1f} MiB"
            )


if __name__ == "__main__":
    main()
