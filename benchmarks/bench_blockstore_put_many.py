"""put_many throughput: 1 GiB as 4096 blocks of 256 KiB, hashed and stored, vs sha256 alone.

Usage: python benchmarks/bench_blockstore_put_many.py [DIR] [--reps N] [--no-sync]
       [--store packed|files] [--blocks N] [--size BYTES]

Prints, per repetition, sha256 throughput over the same bytes, hash+put_many throughput into
the store under DIR (default: a temporary directory) and their ratio. ``--store packed`` (the
default) is the repository's PackedBlockStore (LMDB for blocks up to 1 MiB), ``files`` the
one-file-per-block FSBlockStore. ``--blocks 10000 --size 2048`` measures small blocks.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cats_runtime.cas import Block, FSBlockStore, PackedBlockStore

BLOCKS = 4096
SIZE = 256 * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", nargs="?", default=None)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-sync", action="store_true")
    parser.add_argument("--store", choices=("packed", "files"), default="packed")
    parser.add_argument("--blocks", type=int, default=BLOCKS)
    parser.add_argument("--size", type=int, default=SIZE)
    args = parser.parse_args()
    count, size = args.blocks, args.size
    seed = os.urandom(max(size, 32))
    # distinct blocks without holding 2 GiB: each differs in its first 32 bytes
    datas = [hashlib.sha256(i.to_bytes(4, "big")).digest() + seed[32:size] for i in range(count)]
    total = sum(len(d) for d in datas)
    base = Path(args.dir or tempfile.mkdtemp(prefix="cats-bench-"))
    ratios = []
    for rep in range(args.reps):
        root = base / f"store-{rep}"
        shutil.rmtree(root, ignore_errors=True)
        os.sync()
        start = time.perf_counter()
        for data in datas:
            hashlib.sha256(data).digest()
        t_sha = time.perf_counter() - start
        store: FSBlockStore | PackedBlockStore
        if args.store == "packed":
            store = PackedBlockStore(root, sync=not args.no_sync)
        else:
            store = FSBlockStore(root, sync=not args.no_sync)
        start = time.perf_counter()
        store.put_many(Block.encode(data) for data in datas)  # hashing happens in the producer
        t_put = time.perf_counter() - start
        ratios.append(t_sha / t_put)
        print(
            f"rep {rep}: sha256 {total / t_sha / 1e9:.2f} GB/s, hash+put_many {total / t_put / 1e9:.2f} GB/s "
            f"({t_put:.2f} s), ratio {t_sha / t_put:.2f}",
            flush=True,
        )
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.store}, {count} blocks of {size} B: median ratio (hash+put_many vs sha256): "
        f"{statistics.median(ratios):.2f}; load {os.getloadavg()}"
    )
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
