"""Benchmark: whole-repository work at 10k and 100k items (1M with ``--full``), issue 14's tables.

Every figure is a ratio or a growth exponent measured in the same run:

- durable ``put_many`` of 1-4 KiB blocks: blocks/s, ratio to plain file creation (open, write,
  close each file, one ``sync`` at the end) and to open+read+sha256 of the same files;
- ``repo gc`` with half the pins removed, ``catalog rebuild`` and ``cats ls --json`` over N runs,
  ``add_path --only-hash`` of a directory of N empty files: peak RSS of the child process doing
  it (VmHWM) above its peak once its modules are imported, and the growth exponent of that
  excess across sizes (0 = flat, 1 = linear);
- ``catalog rebuild`` time: records/s and the exponent of time across sizes;
- lineage downstream of a root with a fan-out of N/10 children (10k at 100k): walk and text
  render time, exponent across sizes (1 = linear);
- pin walks: blocks read by ``PinStore.add`` for the newest BOM of a chain of depth D
  (10, 100, 1000), and the exponent across depths (0 = a run's pin costs its own blocks only).

Only public APIs are used (``Repo.open``, ``Node``, the records and the ``cats`` command), so it
measures whatever store is current. Tables are printed in Markdown.

usage: python benchmarks/bench_scale.py [--sizes 10000,100000] [--full] [--dir TMPDIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_add import machine

# The synthetic runs and the memory sampler are shared with the scale tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from scale_runs import AnonPeak, anon_mb, put_batched, run_blocks, runs, scale_function

from cats_runtime.cas import CID, Block, PinStore, Repo, add_directory
from cats_runtime.cas._cid import RAW
from cats_runtime.cas._dagcbor import _parse_cid
from cats_runtime.records import StructureRecord

_ROOT = Path(__file__).resolve().parents[1]
_BATCH = 1_000


# -- helpers ----------------------------------------------------------------------------------
def exponent(sizes: Sequence[int], values: Sequence[float]) -> float:
    """Slope of log(value) over log(size) between the smallest and largest size."""
    lo, hi = max(values[0], 1e-9), max(values[-1], 1e-9)
    return math.log(hi / lo) / math.log(sizes[-1] / sizes[0])


def peak_mb() -> float:
    """This process's peak RSS (VmHWM), in MB.

    Not ``ru_maxrss``: after fork (or vfork) and exec it still counts the parent's pages the
    child had before exec, so a big parent would hide a child's growth.
    """
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def child(name: str, *args: str) -> tuple[dict[str, Any], float]:
    """Run ``name`` of this file in a child; returns its JSON result and how much its peak
    anonymous memory grew (MB) during the work, past imports (its VmHWM growth is in the result)."""
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, __file__, "--child", name, out.name, *args]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise SystemExit(f"child {name} failed")
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
    return result, float(result["anon_grown_mb"])


# -- children (each measured for peak RSS) --------------------------------------------------------
def child_gc(home: str) -> dict[str, Any]:
    start = time.perf_counter()
    result = Repo.open(home).gc()
    return {"seconds": time.perf_counter() - start, "removed": result.removed}


def child_rebuild(home: str) -> dict[str, Any]:
    from cats_runtime.operations import Node, rebuild_catalog

    start = time.perf_counter()
    with Node.open(Path(home)) as node:
        stats = rebuild_catalog(node)
    return {"seconds": time.perf_counter() - start, "records": stats.records}


def child_add(path: str) -> dict[str, Any]:
    from cats_runtime.cas import add_path

    return {"cid": str(add_path(path, None).cid)}


def child_cli(home: str, *argv: str) -> dict[str, Any]:
    """``cats ARGV`` on ``home`` in this process (its output discarded), timed."""
    from cats_runtime.cli import main as cats_main

    os.environ["CATS_HOME"] = home
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    sys.stdout.flush()
    os.dup2(devnull, 1)
    start = time.perf_counter()
    code: object = 0
    try:
        cats_main(list(argv))
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
    if code not in (0, None):
        raise SystemExit(f"cats {' '.join(argv)} exited {code}")
    return {"seconds": time.perf_counter() - start}


_CHILDREN = {
    "gc": child_gc,
    "rebuild": child_rebuild,
    "add": child_add,
    "cli": child_cli,
}


# -- measurements -----------------------------------------------------------------------------
def bench_put_many(work: Path, n: int) -> dict[str, float]:
    rng = random.Random(n)
    datas = [rng.randbytes(rng.randrange(1024, 4097)) for _ in range(n)]
    files = work / f"files-{n}"
    files.mkdir()
    start = time.perf_counter()
    for i, data in enumerate(datas):
        fd = os.open(files / f"f{i:07d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    os.sync()
    create = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for entry in os.scandir(files):
        with open(entry.path, "rb") as f:
            hashlib.sha256(f.read()).digest()
    read_hash = n / (time.perf_counter() - start)
    shutil.rmtree(files)
    repo = Repo.open(work / f"put-{n}")  # durable: sync=True
    blocks = [Block.encode(data) for data in datas]
    start = time.perf_counter()
    for i in range(0, n, _BATCH):
        repo.blocks.put_many(blocks[i : i + _BATCH])
    put = n / (time.perf_counter() - start)
    shutil.rmtree(work / f"put-{n}")
    return {"put": put, "create": create, "read_hash": read_hash}


def bench_gc(work: Path, n: int) -> tuple[float, float]:
    """Peak RSS (MB) of ``repo gc`` over n blocks under n/100 pins, half of them removed."""
    home = work / f"gc-{n}"
    repo = Repo.open(home, sync=False)
    roots: list[CID] = []
    for start in range(0, n, 100):
        blocks = [Block.encode(f"{i}".encode()) for i in range(start, start + 100)]
        repo.blocks.put_many(blocks)
        entries = [(f"b{j}", b.cid, len(b.data)) for j, b in enumerate(blocks)]
        roots.append(add_directory(entries, repo.blocks).cid)
    for root in roots:
        repo.pins.add(root)
    for root in roots[::2]:
        repo.pins.remove(root)
    result, rss = child("gc", str(home))
    shutil.rmtree(home)
    return rss, float(result["seconds"])


def bench_catalog(work: Path, n: int) -> dict[str, float]:
    """``catalog rebuild`` then ``cats ls --json`` over n runs (3 records and an output each)."""
    home = work / f"cat-{n}"
    put_batched(Repo.open(home, sync=False), runs(n))
    result, rebuild_rss = child("rebuild", str(home))
    ls, ls_rss = child("cli", str(home), "ls", "--json")
    shutil.rmtree(home)
    return {
        "rebuild_rss": rebuild_rss,
        "rebuild_s": float(result["seconds"]),
        "records": float(result["records"]),
        "ls_rss": ls_rss,
        "ls_s": float(ls["seconds"]),
    }


def bench_lineage(work: Path, fan_out: int) -> tuple[float, float]:
    """Walk and text-render times downstream of a root BOM with ``fan_out`` children."""
    from cats_runtime.operations import Node, lineage, rebuild_catalog, render_lineage
    from cats_runtime.records import decode_record

    home = work / f"lineage-{fan_out}"
    repo = Repo.open(home, sync=False)
    function = scale_function()
    structure = StructureRecord(cloud="local", stack="local", program=None, outputs=[])
    root_blocks = run_blocks(function, structure, -1, CID.compute(b"root datum", RAW), [])
    repo.blocks.put_many(root_blocks)
    root = decode_record(root_blocks[-1].data)
    put_batched(repo, runs(fan_out, fan_out_of=root))
    with Node.open(home) as node:
        rebuild_catalog(node)
        # A `cats lineage` process starts with no CID parsed: the rebuild just parsed them all, and
        # the decoder's cache (8,192 CIDs) would serve a small walk whole and a big one not at all.
        _parse_cid.cache_clear()
        start = time.perf_counter()
        graph = lineage(node, root_blocks[-1].cid, depth=2)
        walked = time.perf_counter() - start
        start = time.perf_counter()
        render_lineage(graph, "text")
        rendered = time.perf_counter() - start
    shutil.rmtree(home)
    return walked, rendered


class _Counting:
    """A block source that counts reads (the pin walk's cost)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads = 0

    def get(self, cid: CID) -> bytes:
        self.reads += 1
        data: bytes = self.inner.get(cid)
        return data

    def has(self, cid: CID) -> bool:
        return bool(self.inner.has(cid))


def bench_pins(work: Path, depth: int) -> int:
    """Blocks read by pinning the newest BOM of a chain of ``depth`` runs, each pinned in turn."""
    home = work / f"pins-{depth}"
    repo = Repo.open(home, sync=False)
    source = _Counting(repo.blocks)
    pins = PinStore(home / "bench-pins", source=source)  # type: ignore[arg-type]
    function = scale_function()
    structure = StructureRecord(cloud="local", stack="local", program=None, outputs=[])
    first = Block.encode(b"d0")
    add_directory([], repo.blocks)  # the Function's code
    repo.blocks.put_many([function.to_block(), structure.to_block(), first])
    parents: list[CID] = []
    datum = first.cid
    reads = 0
    for i in range(depth):
        blocks = run_blocks(function, structure, i, datum, parents)
        repo.blocks.put_many(blocks)
        bom = blocks[-1].cid
        source.reads = 0
        pins.add(bom)
        reads = source.reads
        parents = [bom]
        datum = blocks[0].cid  # the next run consumes this one's output
    shutil.rmtree(home)
    return reads


def bench_big_dir(work: Path, n: int) -> float:
    tree = work / f"dir-{n}"
    tree.mkdir()
    for i in range(n):
        os.close(os.open(tree / f"file-{i:07d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    _, rss = child("add", str(tree))
    shutil.rmtree(tree)
    return rss


# -- main -------------------------------------------------------------------------------------
def main() -> None:
    if sys.argv[1:2] == ["--child"]:  # one measured piece of work, run by child()
        name, out, *rest = sys.argv[2:]
        import cats_runtime.cli
        import cats_runtime.operations  # noqa: F401  (imported before the work is measured)

        start, start_anon = peak_mb(), anon_mb()
        sampler = AnonPeak()
        result = _CHILDREN[name](*rest)
        anon = sampler.stop() - start_anon
        Path(out).write_text(json.dumps({**result, "grown_mb": peak_mb() - start, "anon_grown_mb": anon}))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated item counts")
    parser.add_argument("--full", action="store_true", help="also 1,000,000 items")
    parser.add_argument("--dir", default=None, help="where to create the repositories")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.full and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    print(f"# bench_scale: sizes {sizes}; {machine()}\n")
    work = Path(tempfile.mkdtemp(prefix="cats-bench-scale-", dir=args.dir))
    try:
        report(work, sizes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


def report(work: Path, sizes: list[int]) -> None:
    print("## Durable put_many of 1-4 KiB blocks\n")
    print("| blocks | blocks/s | vs file creation | vs open+read+sha256 |")
    print("|---:|---:|---:|---:|")
    for n in sizes:
        r = bench_put_many(work, n)
        print(
            f"| {n:,} | {r['put']:,.0f} | {r['put'] / r['create']:.2f}x | {r['put'] / r['read_hash']:.3f}x |"
        )

    print(
        "\n## Peak anonymous memory growth of the child doing the work (MB, past its imports; "
        "mapped store pages excluded, see AnonPeak), exponent across sizes\n"
    )
    print("| work | " + " | ".join(f"{n:,}" for n in sizes) + " | exponent |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    gc = [bench_gc(work, n) for n in sizes]
    catalog = [bench_catalog(work, n) for n in sizes]
    big = [bench_big_dir(work, n) for n in sizes]
    rows = [
        ("repo gc, half the pins removed (blocks)", [g[0] for g in gc]),
        ("catalog rebuild (runs = 3 records each)", [c["rebuild_rss"] for c in catalog]),
        ("cats ls --json (runs)", [c["ls_rss"] for c in catalog]),
        ("add --only-hash, one directory (entries)", big),
    ]
    for label, values in rows:
        cells = " | ".join(f"{v:.0f}" for v in values)
        growth = exponent(sizes, [max(v, 1.0) for v in values]) if len(sizes) > 1 else float("nan")
        print(f"| {label} | {cells} | {growth:.2f} |")

    print("\n## Catalog rebuild time\n")
    print("| runs | records/s | time exponent |")
    print("|---:|---:|---:|")
    times = [c["rebuild_s"] for c in catalog]
    growth = exponent(sizes, times) if len(sizes) > 1 else float("nan")
    for n, c in zip(sizes, catalog, strict=True):
        print(f"| {n:,} | {c['records'] / c['rebuild_s']:,.0f} | {growth:.2f} |")

    print("\n## Lineage downstream of a fan-out (walk and text render)\n")
    fans = [max(10, n // 10) for n in sizes]
    lin = [bench_lineage(work, f) for f in fans]
    print("| children | walk s | render s | walk exponent | render exponent |")
    print("|---:|---:|---:|---:|---:|")
    walk_e = exponent(fans, [w for w, _ in lin]) if len(fans) > 1 else float("nan")
    render_e = exponent(fans, [r for _, r in lin]) if len(fans) > 1 else float("nan")
    for f, (w, r) in zip(fans, lin, strict=True):
        print(f"| {f:,} | {w:.2f} | {r:.2f} | {walk_e:.2f} | {render_e:.2f} |")

    print("\n## Pin walks: blocks read pinning the newest BOM of a chain\n")
    depths = [10, 100, 1000]
    reads = [bench_pins(work, d) for d in depths]
    print("| chain depth | blocks read | exponent |")
    print("|---:|---:|---:|")
    growth = exponent(depths, [float(r) for r in reads])
    for d, r in zip(depths, reads, strict=True):
        print(f"| {d:,} | {r:,} | {growth:.2f} |")


if __name__ == "__main__":
    main()
