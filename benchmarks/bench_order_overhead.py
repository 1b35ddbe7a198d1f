"""Per-Order overhead of CATs over a bare Ray task doing the same work (target: <= 50 ms).

Both sides read a small file and write its upper-case copy, on the same warm local Ray. The
CATs side is a whole `run` (Order, materialize code + input from the CAS, output import, block
verification, log, Invoice, signed BOM, catalog rows), forced so nothing is memoized.
Prints the median of 20 of each and the difference.

    .venv/bin/python benchmarks/bench_order_overhead.py [--n 20]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import ray

from cats_runtime.cas import _unixfs
from cats_runtime.operations import Node, build_function, run

CODE = "def main(ctx):\n    (ctx.output / 'out.txt').write_text(ctx.inputs['doc'].read_text().upper())\n"


@ray.remote
def bare(text: str) -> bytes:
    # The same work without CATs: the input travels as a task argument, the output as bytes.
    return text.upper().encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "code").mkdir()
        (root / "code" / "fn.py").write_text(CODE)
        doc = root / "doc.txt"
        doc.write_text("hello cats\n" * 100)
        with Node.open(root / "home") as node:
            _, fn = build_function(f"{root / 'code'}:fn:main", node.store)
            inputs = {"doc": _unixfs.add_path(doc, node.store).cid}
            for _ in range(3):  # warm: workers started, code cached, modules imported
                run(node, function=fn, inputs=inputs, force=True)
                ray.get(bare.remote(doc.read_text()))
            base: list[float] = []
            cats: list[float] = []
            for i in range(args.n):
                t = time.perf_counter()
                ray.get(bare.remote(doc.read_text()))
                base.append(time.perf_counter() - t)
                t = time.perf_counter()
                out = run(node, function=fn, inputs=inputs, seed=i, force=True)
                cats.append(time.perf_counter() - t)
                assert out.status == "succeeded"
    ray.shutdown()
    b, c = statistics.median(base) * 1000, statistics.median(cats) * 1000
    print(f"bare Ray task   median {b:8.1f} ms  (n={args.n})")
    print(f"CATs run        median {c:8.1f} ms  (n={args.n})")
    print(f"overhead        {c - b:8.1f} ms per Order  (target <= 50 ms)  ratio {c / b:.1f}x")


if __name__ == "__main__":
    main()
