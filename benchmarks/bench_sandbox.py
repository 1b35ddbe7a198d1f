"""Per-task overhead of the sandbox (spawn + materialize) vs the same task run unsandboxed.

Target: median overhead <= 30 ms per task (median of --n tasks, each a map datum of a small
function). "Unsandboxed" is how tasks ran before the sandbox: materialize code and datum, import
the entrypoint in the worker's own interpreter and call it. The sandboxed runs go through
``run_task`` exactly as a Ray worker does (no Ray here: it would only add the same constant to
both sides). ``none`` (a fresh process, no namespaces) separates the cost of spawning Python from
the cost of bubblewrap. ``bwrap`` is the default: one warm sandboxed fork server per worker forks
each task into namespaces of its own; ``bwrap-exec`` starts a fresh bwrap and Python per task
(what runs where the fork server cannot, ``CATS_SANDBOX_FORK=0``). The CPU column counts this
process and the children it reaped: in the ``bwrap`` rows the Python inside is reaped within its
pid namespace and is undercounted, so read the ``none`` row for the CPU cost of starting Python.

.venv/bin/python benchmarks/bench_sandbox.py [--n 50]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from cats_runtime.cas import MemoryBlockStore, _unixfs
from cats_runtime.execution import (
    Context,
    Datum,
    DatumRef,
    SandboxSettings,
    TaskSpec,
    _sandbox,
    bwrap_available,
    load_entrypoint,
    materialize,
    remove_tree,
    run_task,
)

BODY = (
    "def main(ctx):\n"
    "    text = ctx.datum.path.read_text()\n"
    "    (ctx.output / ctx.datum.name).write_text(str(len(text.split())))\n"
)


def _unsandboxed(store: MemoryBlockStore, spec: TaskSpec, work: Path, i: int) -> None:
    import logging

    from cats_runtime.cas import CID

    assert spec.datum is not None
    tmp = Path(tempfile.mkdtemp(dir=work))
    try:
        code = CID.decode(spec.code)
        fn = load_entrypoint(materialize(store, code, tmp / "code"), spec.entrypoint, code)
        (tmp / "in").mkdir()
        path = materialize(store, CID.decode(spec.datum.cid), tmp / "in" / spec.datum.name)
        (tmp / "out").mkdir()
        log = logging.Logger("bench")
        datum = Datum(spec.datum.input, spec.datum.name, path, spec.datum.cid)
        fn(Context(inputs={"d": path}, output=tmp / "out", params={}, seed=0, log=log, datum=datum))
        _unixfs.add_path(tmp / "out", MemoryBlockStore())
    finally:
        remove_tree(tmp)


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    store = MemoryBlockStore()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "code").mkdir()
        (root / "code" / "wc.py").write_text(BODY)
        code = str(_unixfs.add_path(root / "code", store).cid)
        specs = []
        for i in range(args.n):
            cid = _unixfs.add_bytes(f"datum {i} ".encode() * 50, store)
            specs.append(
                (i, TaskSpec(f"d/{i}", code, "wc:main", {}, {}, 0, DatumRef("d", f"f{i}", str(cid))))
            )
        work = root / "work"
        work.mkdir(mode=0o700)
        timings: dict[str, list[float]] = {"unsandboxed": [], "none": [], "bwrap-exec": [], "bwrap": []}
        # CPU seconds (this process + its children) per task: what the task costs the machine,
        # much less sensitive than wall time to other load on a shared machine.
        cpu: dict[str, list[float]] = {k: [] for k in timings}
        modes = ["none", "bwrap-exec", "bwrap"] if bwrap_available() is None else ["none"]
        for i, spec in specs:  # interleaved, so load changes on the machine hit every variant alike
            t, c = time.perf_counter(), _cpu()
            _unsandboxed(store, spec, work, i)
            timings["unsandboxed"].append(time.perf_counter() - t)
            cpu["unsandboxed"].append(_cpu() - c)
            for mode in modes:
                real = "bwrap" if mode == "bwrap-exec" else mode
                os.environ["CATS_SANDBOX_FORK"] = "0" if mode == "bwrap-exec" else "1"
                s = TaskSpec(**{**spec.__dict__, "sandbox": SandboxSettings(mode=real, workdir=str(work))})  # type: ignore[arg-type]
                t, c = time.perf_counter(), _cpu()
                result = run_task(s, store)
                timings[mode].append(time.perf_counter() - t)
                cpu[mode].append(_cpu() - c)
                assert result.status == "succeeded", result.error
    base = statistics.median(timings["unsandboxed"]) * 1000
    base_cpu = statistics.median(cpu["unsandboxed"]) * 1000
    load = os.getloadavg()[0]
    print(f"tasks per variant: {args.n}; load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"unsandboxed (in-process) : median {base:7.1f} ms wall, {base_cpu:6.1f} ms CPU per task")
    for mode in modes:
        med = statistics.median(timings[mode]) * 1000
        med_cpu = statistics.median(cpu[mode]) * 1000
        print(
            f"sandbox {mode:<17}: median {med:7.1f} ms wall, {med_cpu:6.1f} ms CPU per task; overhead "
            f"{med - base:7.1f} ms wall (target <= 30), {med_cpu - base_cpu:6.1f} ms CPU"
        )
    if "bwrap" not in modes:
        print(f"bwrap not measured: {bwrap_available()}")
    elif _sandbox.fork_server_unavailable is not None:
        print(f"the fork server could not start, bwrap ran exec per task: {_sandbox.fork_server_unavailable}")


if __name__ == "__main__":
    main()
