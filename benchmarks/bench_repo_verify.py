"""Benchmark: ``cats repo verify`` (Repo.verify) vs sha256 over the same bytes, same run.

Builds a repository of N blocks of 1-4 KiB (and, with --large, 256 KiB chunk blocks), then
times Repo.verify (every block read and re-hashed) against hashlib.sha256 of the same bytes
held in memory. Best of --repeat, interleaved.

usage: python benchmarks/bench_repo_verify.py [--blocks 10000] [--size-min 1024]
       [--size-max 4096] [--repeat 3] [--dir TMPDIR]
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

from cats_runtime.cas import RAW, Block, Repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--size-min", type=int, default=1024)
    parser.add_argument("--size-max", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    rng = random.Random(11)
    datas = [rng.randbytes(rng.randrange(args.size_min, args.size_max + 1)) for _ in range(args.blocks)]
    total = sum(len(d) for d in datas)
    tmp = Path(tempfile.mkdtemp(prefix="cats-bench-verify-", dir=args.dir))
    try:
        repo = Repo.open(tmp / "home")
        repo.blocks.put_many(Block.encode(d, RAW) for d in datas)
        print(f"machine: {machine()}")
        print(f"{args.blocks} blocks of {args.size_min}-{args.size_max} B, {total / 2**20:.1f} MiB")
        sha_t: list[float] = []
        ver_t: list[float] = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for d in datas:
                hashlib.sha256(d).digest()
            sha_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            report = repo.verify()
            ver_t.append(time.perf_counter() - start)
            assert report.checked == args.blocks and not report.corrupt
        sha, ver = min(sha_t), min(ver_t)
        print(f"sha256 in memory: {total / sha / 2**20:8.1f} MiB/s ({sha:.3f} s)")
        print(f"repo verify:      {total / ver / 2**20:8.1f} MiB/s ({ver:.3f} s)  ratio {sha / ver:.3f}")
        print(f"load {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
