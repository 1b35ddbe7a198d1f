"""Wall time of `cats run` (cold: starts the home's Ray; warm: reuses it) and of `cats --help`,
against `python -c pass` measured in the same run (target: warm `cats run` <= 2 s on 2 cores).

.venv/bin/python benchmarks/bench_cli_latency.py [--warm 5] [--cold 2] [--help-runs 5]

Each figure is a median of separate processes, as a person types them. Cold runs stop the
home's Ray first (`cats ray stop`), so each one pays for Ray's start; warm runs change the seed so
each one really executes (a repeated Order would be answered from the catalog without running).
The printed ratios divide by the `python -c pass` median of this run, so a loaded machine inflates
both sides; report the load average with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CATS = str(Path(sys.executable).with_name("cats"))


def _timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}... exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", type=int, default=5, help="warm runs (median)")
    parser.add_argument("--cold", type=int, default=2, help="cold runs (median)")
    parser.add_argument("--help-runs", type=int, default=5, help="`cats --help` and `python -c pass` runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cats-bench-") as tmp:
        root = Path(tmp)
        home = root / "home"
        code = root / "code"
        code.mkdir()
        (code / "tiny.py").write_text("def main(ctx):\n    (ctx.output / 'out.txt').write_text('tiny\\n')\n")
        data = root / "input.txt"
        data.write_text("input\n")
        env = {**os.environ, "CATS_HOME": str(home), "CATS_RAY_IDLE_TIMEOUT": "600"}
        base = [CATS, "--home", str(home)]

        def run(seed: int) -> float:
            argv = [*base, "run", "--function", f"{code}:tiny:main", "--input", f"data={data}"]
            return _timed([*argv, "--seed", str(seed)], env)

        try:
            baseline = statistics.median(
                _timed([sys.executable, "-c", "pass"], env) for _ in range(args.help_runs)
            )
            helps = statistics.median(_timed([*base, "--help"], env) for _ in range(args.help_runs))
            colds = []
            for i in range(args.cold):
                _timed([*base, "ray", "stop"], env)
                colds.append(run(1000 + i))
            cold = statistics.median(colds)
            warm = statistics.median(run(i) for i in range(args.warm))
        finally:
            subprocess.run([*base, "ray", "stop"], capture_output=True, env=env, timeout=300, check=False)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
    print(f"python -c pass   {baseline * 1000:8.0f} ms  (baseline)")
    print(f"cats --help      {helps * 1000:8.0f} ms  {helps / baseline:6.1f}x baseline")
    print(f"cats run (cold)  {cold * 1000:8.0f} ms  {cold / baseline:6.1f}x baseline")
    print(f"cats run (warm)  {warm * 1000:8.0f} ms  {warm / baseline:6.1f}x baseline")
    print(f"warm / cold      {warm / cold:8.2f}   target warm <= 2 s: {'met' if warm <= 2.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
