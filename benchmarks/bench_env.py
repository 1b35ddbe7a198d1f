"""Benchmark: building a numpy+pandas Environment from the CAS vs `uv pip install` from a local dir.

Setup (not timed): the pins of ``examples/frames/requirements.lock`` are resolved once into an
FSBlockStore (wheels downloaded with pip, stored as UnixFS files). Then, alternating, each round:

- **ours, cold cache**: ``build_environment`` into an empty cache: every wheel exported from the
  CAS (blocks verified), sha256 checked, ``uv venv`` + ``uv pip install --offline --no-index
  --require-hashes --no-deps --compile-bytecode`` and the atomic rename;
- **baseline**: the same ``uv venv`` + ``uv pip install`` with the same flags, of the same wheels
  already sitting in a local directory (a fresh uv cache too).

Target: ours / baseline <= 1.2. Then the per-task cost of reusing the built Environment: the
cache lookup alone (``build_environment`` on a complete entry), and a whole trivial task run in
it (``run_task``: materialize, child interpreter, output import). Target <= 50 ms per task for the
reuse itself. Best (minimum) of ``--rounds`` rounds.

usage: python benchmarks/bench_env.py [--rounds 2] [--tasks 20] [--lock FILE] [--dir TMPDIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench_add import machine

from cats_runtime.cas import FSBlockStore, _unixfs
from cats_runtime.execution import TaskSpec, build_environment, load_environment, run_task
from cats_runtime.execution._environment import _export_wheels, install_environment
from cats_runtime.operations import read_requirements, resolve_environment

LOCK = Path(__file__).resolve().parent.parent / "examples" / "frames" / "requirements.lock"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cats-bench-env-", dir=args.dir))
    try:
        store = FSBlockStore(tmp / "store")
        record, cid = resolve_environment(read_requirements(args.lock), store)
        total = sum(d.size for d in record.distributions)
        print(f"machine: {machine()}")
        print(
            f"environment {cid}: {len(record.distributions)} wheels, {total / 1e6:.1f} MB "
            f"({', '.join(f'{d.name}=={d.version}' for d in record.distributions)})"
        )
        local = tmp / "local"
        local.mkdir()
        reqs = _export_wheels(store, load_environment(store, cid), cid, local / "wheels")
        ours: list[float] = []
        base: list[float] = []
        for i in range(args.rounds):
            cache = tmp / f"cache{i}"
            start = time.perf_counter()
            built = build_environment(store, cid, cache)
            ours.append(time.perf_counter() - start)
            scratch = tmp / f"base{i}"
            scratch.mkdir()
            start = time.perf_counter()
            install_environment(scratch / "venv", local / "wheels", reqs, scratch)
            base.append(time.perf_counter() - start)
            shutil.rmtree(scratch / "uv-cache", ignore_errors=True)
            print(f"round {i}: ours {ours[-1]:.2f} s, baseline {base[-1]:.2f} s")
        o, b = min(ours), min(base)
        print(f"baseline uv pip install (local dir): {b:7.2f} s")
        print(f"ours, from the CAS (cold cache):     {o:7.2f} s  ratio {o / b:.3f} (target <= 1.2)")

        lookups = []
        for _ in range(200):
            start = time.perf_counter()
            build_environment(store, cid, tmp / "cache0")
            lookups.append(time.perf_counter() - start)
        lookup_ms = statistics.median(lookups) * 1e3
        print(f"reuse, cache lookup:                 {lookup_ms:7.3f} ms per task (median)")

        code = tmp / "code"
        code.mkdir()
        (code / "fn.py").write_text("def main(ctx):\n    (ctx.output / 'ok').write_text('1')\n")
        doc = _unixfs.add_bytes(b"x", store)
        spec = TaskSpec(
            "batch",
            str(_unixfs.add_path(code, store).cid),
            "fn:main",
            {"doc": str(doc)},
            {},
            0,
            environment=str(cid),
            env_cache=str(tmp / "cache0"),
        )
        plain = TaskSpec("batch", spec.code, spec.entrypoint, spec.inputs, {}, 0)
        work = tmp / "work"
        work.mkdir()
        timings: dict[str, list[float]] = {"env": [], "plain": []}
        child_cpu: list[float] = []
        for _ in range(args.tasks):
            for name, s in (("env", spec), ("plain", plain)):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                result = run_task(s, store, workdir=work)
                timings[name].append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if name == "env":
                    child_cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                assert result.status == "succeeded", result.log
        env_ms = statistics.median(timings["env"]) * 1e3
        plain_ms = statistics.median(timings["plain"]) * 1e3
        cpu_ms = statistics.median(child_cpu) * 1e3
        print(f"trivial task in the env:  {env_ms:7.1f} ms wall (no env, in-process: {plain_ms:.1f} ms)")
        print(f"per-task env overhead:    {env_ms - plain_ms:7.1f} ms wall, {cpu_ms:.1f} ms CPU in the child")
        assert built.python.exists()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
