"""Benchmark: reading a large UnixFS file back with verification vs sha256 of the original file.

A file (default 1 GiB) is added to a repository's store (PackedBlockStore: chunks in LMDB).
The baseline reads the original file and hashes it with hashlib.sha256 (1 MiB reads). Ours:
``cat`` (every block fetched from the store and hash-verified, bytes consumed) and ``get``
(the same, written to a new file). Prints throughput and ratios; best of ``--repeat`` runs.

usage: python benchmarks/bench_get.py [--size 1GiB] [--repeat 3] [--dir TMPDIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench_add import machine, make_file, parse_size, sha256_file

from cats_runtime.cas import Repo, add_path, cat, get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    size = parse_size(args.size)
    tmp = Path(tempfile.mkdtemp(prefix="cats-bench-get-", dir=args.dir))
    try:
        path = tmp / "data.bin"
        make_file(path, size)
        # The repository's own store, as `cats cat` / `cats get` read it (256 KiB chunks are
        # packed in LMDB, every read re-hashed).
        store = Repo.open(tmp / "home").blocks
        kind = type(store).__name__
        cid = add_path(path, store).cid
        sha256_file(path)
        print(f"machine: {machine()}")
        print(f"file: {size} bytes, store: {kind}, root {cid}")
        base_t: list[float] = []
        cat_t: list[float] = []
        get_t: list[float] = []
        for i in range(args.repeat):
            start = time.perf_counter()
            sha256_file(path)
            base_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            n = sum(len(piece) for piece in cat(store, cid))
            cat_t.append(time.perf_counter() - start)
            assert n == size
            out = tmp / f"out{i}"
            start = time.perf_counter()
            get(store, cid, out)
            get_t.append(time.perf_counter() - start)
            out.unlink()
        base, c, g = min(base_t), min(cat_t), min(get_t)
        print(f"baseline read+sha256:   {size / base / 1e9:6.3f} GB/s ({base:.3f} s)")
        print(f"cat (verified):         {size / c / 1e9:6.3f} GB/s ({c:.3f} s)  ratio {base / c:.3f}")
        print(f"get to a file:          {size / g / 1e9:6.3f} GB/s ({g:.3f} s)  ratio {base / g:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
