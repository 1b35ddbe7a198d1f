"""Shared setup of the map benchmarks: N small text datums and a CPU-bound per-datum function."""

from __future__ import annotations

from pathlib import Path

# ~20 ms of pure-Python work per datum (a hash chain), so the benchmark measures scheduling and
# parallelism rather than the noise of a no-op.
CODE = """
import hashlib

def main(ctx):
    data = ctx.datum.path.read_bytes()
    h = data
    for _ in range(ctx.params.get("rounds", 20000)):
        h = hashlib.sha256(h).digest()
    (ctx.output / (ctx.datum.name + ".hash")).write_text(h.hex())
"""


def make_datums(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"d{i:05d}.txt").write_text(f"datum {i}\n" * 8)


def make_code(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fn.py").write_text(CODE)
    return f"{folder}:fn:main"
