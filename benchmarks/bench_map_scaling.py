"""Map mode over 1,000 small datums with 2 CPUs vs 1 CPU (target: >= 1.6x).

Each run uses a fresh local Ray sized to the CPU count under test and a fresh store, and is
forced (no memoization). Prints both wall times and the speed-up.

    .venv/bin/python benchmarks/bench_map_scaling.py [--n 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing
import tempfile
import time
from pathlib import Path

import ray

from cats_runtime.cas import _unixfs
from cats_runtime.operations import Node, build_function, run

try:
    from _datums import make_code, make_datums
except ImportError:  # run as a module
    from benchmarks._datums import make_code, make_datums


def timed(root: Path, cpus: int, n: int, rounds: int) -> float:
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        with Node.open(root / f"home{cpus}") as node:
            _, fn = build_function(make_code(root / "code"), node.store, mode="map")
            data = _unixfs.add_path(root / "data", node.store).cid
            # Warm the workers and the code cache on a small input first.
            warm = _unixfs.add_path(root / "warm", node.store).cid
            run(node, function=fn, inputs={"data": warm}, params={"rounds": rounds}, force=True)
            t = time.perf_counter()
            out = run(node, function=fn, inputs={"data": data}, params={"rounds": rounds}, force=True)
            elapsed = time.perf_counter() - t
            assert out.status == "succeeded" and out.computed == n, out.error
            return elapsed
    finally:
        ray.shutdown()


def _work(rounds: int) -> bytes:
    h = b"datum"
    for _ in range(rounds):
        h = hashlib.sha256(h).digest()
    return h


def machine_speedup(n: int, rounds: int) -> float:
    """What the machine itself gives for the same work: 2 processes vs 1 (other load included)."""
    times = []
    for procs in (1, 2):
        with multiprocessing.Pool(procs) as pool:
            pool.map(_work, [rounds] * 4)
            t = time.perf_counter()
            pool.map(_work, [rounds] * n, chunksize=1)
            times.append(time.perf_counter() - t)
    return times[0] / times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20000, help="hash rounds per datum (~1 us each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_datums(root / "data", args.n)
        make_datums(root / "warm", 4)
        one = timed(root, 1, args.n, args.rounds)
        two = timed(root, 2, args.n, args.rounds)
    print(f"1 CPU : {one:7.2f} s for {args.n} datums ({one / args.n * 1000:.1f} ms/datum)")
    print(f"2 CPUs: {two:7.2f} s for {args.n} datums ({two / args.n * 1000:.1f} ms/datum)")
    machine = machine_speedup(min(args.n, 300), args.rounds)
    print(f"speed-up {one / two:.2f}x (target >= 1.6x)")
    print(
        f"same work in bare processes (2 vs 1, this machine now): {machine:.2f}x; CATs reaches "
        f"{(one / two) / machine * 100:.0f}% of it"
    )


if __name__ == "__main__":
    main()
