"""Benchmark: UnixFS add of 10,000 small files (1-4 KiB) in one directory vs sha256 of each file.

The baseline lists the directory and, for each file, opens it, reads it and hashes it with
hashlib.sha256, in the same run. Ours is ``add_path`` of the directory (a HAMT-sharded
directory at this size, as Kubo makes it), only-hash, into an FSBlockStore (one file per
block) and into a PackedBlockStore (the repository's store: small blocks in LMDB). Prints files/s
and the ratios; best of ``--repeat`` runs, interleaved.

usage: python benchmarks/bench_small_files.py [--files 10000] [--repeat 3] [--dir TMPDIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from bench_add import machine

from cats_runtime.cas import add_path, stat


def make_files(root: Path, count: int) -> int:
    rng = random.Random(42)
    root.mkdir()
    total = 0
    for i in range(count):
        data = rng.randbytes(rng.randrange(1024, 4097))
        (root / f"file-{i:05d}.bin").write_bytes(data)
        total += len(data)
    return total


def baseline(root: Path) -> None:
    for entry in os.scandir(root):
        with open(entry.path, "rb") as f:
            hashlib.sha256(f.read()).digest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cats-bench-small-", dir=args.dir))
    try:
        root = tmp / "files"
        total = make_files(root, args.files)
        baseline(root)  # warm the page cache and the dentry cache
        print(f"machine: {machine()}")
        print(f"files: {args.files} in one directory, {total} bytes")
        base_t: list[float] = []
        ours_t: list[float] = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            baseline(root)
            base_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            result = add_path(root, None)
            ours_t.append(time.perf_counter() - start)
        base, ours = min(base_t), min(ours_t)
        n = args.files
        print(f"baseline open+read+sha256: {n / base:9.0f} files/s ({base:.3f} s)")
        speed = f"{n / ours:9.0f} files/s ({ours:.3f} s)"
        print(f"add only-hash:             {speed}  ratio {base / ours:.3f}  {result.cid}")
        try:
            from cats_runtime.cas._blockstore import FSBlockStore  # type: ignore[import-not-found]
        except ImportError:
            print(
                "add into FSBlockStore:     skipped (cats_runtime.cas._blockstore.FSBlockStore not available)"
            )
            return
        store_t: list[float] = []
        for i in range(args.repeat):
            store_root = tmp / f"store{i}"
            store = FSBlockStore(store_root)
            start = time.perf_counter()
            stored = add_path(root, store)
            store_t.append(time.perf_counter() - start)
            assert stored.cid == result.cid
            sharded = stat(store, stored.cid).sharded
            shutil.rmtree(store_root)
        best = min(store_t)
        print(
            f"add into FSBlockStore:     {n / best:9.0f} files/s ({best:.3f} s)  ratio {base / best:.3f}"
            f"  (HAMT-sharded: {sharded})"
        )
        from cats_runtime.cas import PackedBlockStore

        packed_t: list[float] = []
        for i in range(args.repeat):
            store_root = tmp / f"packed{i}"
            packed = PackedBlockStore(store_root)
            start = time.perf_counter()
            stored = add_path(root, packed)
            packed_t.append(time.perf_counter() - start)
            assert stored.cid == result.cid
            start = time.perf_counter()
            checked, corrupt = packed.check()
            verify_t = time.perf_counter() - start
            assert not corrupt
            shutil.rmtree(store_root)
        best = min(packed_t)
        print(
            f"add into PackedBlockStore: {n / best:9.0f} files/s ({best:.3f} s)  ratio {base / best:.3f}"
            "  (durable: one synced LMDB transaction per batch)"
        )
        start = time.perf_counter()
        baseline(root)
        print(
            f"repo verify of that store: {checked} blocks in {verify_t:.3f} s; sha256 of the files' "
            f"bytes {time.perf_counter() - start:.3f} s (open+read+sha256, a rough comparison)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
