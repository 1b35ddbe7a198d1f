"""Memoized rerun after 1 of 1,000 datums changed, vs the full run (target: <= 5% of the full run).

.venv/bin/python benchmarks/bench_memo.py [--n 1000]
"""

from __future__ import annotations

import argparse
import logging
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_datums(root / "data", args.n)
        with Node.open(root / "home") as node:
            _, fn = build_function(make_code(root / "code"), node.store, mode="map")
            params = {"rounds": args.rounds}
            t = time.perf_counter()
            full = run(
                node,
                function=fn,
                inputs={"data": _unixfs.add_path(root / "data", node.store).cid},
                params=params,
            )
            full_s = time.perf_counter() - t
            assert full.computed == args.n
            (root / "data" / "d00007.txt").write_text("changed\n")
            t = time.perf_counter()
            again = run(
                node,
                function=fn,
                inputs={"data": _unixfs.add_path(root / "data", node.store).cid},
                params=params,
            )
            memo_s = time.perf_counter() - t
            assert again.computed == 1 and again.memoized == args.n - 1, (again.computed, again.memoized)
    ray.shutdown()
    print(f"full run      : {full_s:7.2f} s ({args.n} datums computed)")
    print(
        f"rerun, 1 diff : {memo_s:7.2f} s (1 computed, {args.n - 1} memoized; includes re-adding the input)"
    )
    print(f"ratio {memo_s / full_s * 100:.1f}% of the full run (target <= 5%)")


if __name__ == "__main__":
    main()
