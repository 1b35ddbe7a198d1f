"""``catalog rebuild`` and ``cats ls --json`` over 100,000 runs keep memory flat.

Each piece of work runs in its own child process, which samples its anonymous resident memory
(RssAnon, see ``scale_runs.AnonPeak``) from just before the work to its end. VmHWM is not used:
it also counts the store's pages mapped while reading, page cache that grows with what was read
rather than with what the process holds.

The bound is checked to be able to fail: a control child holding only the catalog's rows of the
same 100,000 runs (what ``cats ls`` used to hold, before the facts it added to each) exceeds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_RUNS = 100_000
# Measured growth: 6 MB for rebuild and for ls, at 10k runs as at 100k (benchmarks/bench_scale.py).
# The old rebuild held every decoded record (695 MB at 100k runs) and the old ls every row and
# its facts (296 MB, 506 MB with --json); holding the rows alone takes well over 100 MB here.
_BOUND_MB = 40

_ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
    import json, os, sys
    from pathlib import Path
    from scale_runs import AnonPeak, anon_mb
    import cats_runtime.cli
    from cats_runtime.operations import Node, rebuild_catalog

    mode, home, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    os.environ["CATS_HOME"] = str(home)
    if mode == "build":  # not measured; in a child so that pytest never maps the store
        from scale_runs import put_batched, runs
        from cats_runtime.cas import Repo
        stored = put_batched(Repo.open(home, sync=False), runs(int(out)))
        print(json.dumps({"grown_mb": 0, "count": stored}), file=sys.stderr)
        sys.exit(0)
    before = anon_mb()
    sampler = AnonPeak()
    if mode == "rebuild":
        with Node.open(home) as node:
            count = rebuild_catalog(node).by_type.get("cats/bom@1", 0)
    elif mode == "ls":
        # The real command, its stdout into a file the test reads back.
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        try:
            cats_runtime.cli.main(["ls", "--json"])
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        sys.stdout.flush()
        count = -1
    else:  # "rows": the control, every row of the listing held at once
        with Node.open(home) as node:
            rows = list(node.catalog.iter_runs())
        count = len(rows)
    grown = sampler.stop() - before
    print(json.dumps({"grown_mb": grown, "count": count}), file=sys.stderr)
"""


def _measure(mode: str, home: Path, out: Path | str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), str(_ROOT / "tests")])}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), mode, str(home), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, float] = json.loads(done.stderr.strip().splitlines()[-1])
    return result


def test_rebuild_and_ls_of_100k_runs_keep_memory_flat(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _measure("build", home, str(_RUNS))["count"] == 2 + 4 * _RUNS
    listing = tmp_path / "ls.json"

    rebuild = _measure("rebuild", home, listing)
    assert rebuild["count"] == _RUNS
    assert rebuild["grown_mb"] < _BOUND_MB, (
        f"catalog rebuild of {_RUNS:,} runs grew {rebuild['grown_mb']:.0f} MB"
    )

    ls = _measure("ls", home, listing)
    with listing.open() as f:
        listed = json.load(f)
    assert len(listed) == _RUNS and all(entry["status"] == "succeeded" for entry in listed)
    assert len({entry["bom"] for entry in listed}) == _RUNS
    assert ls["grown_mb"] < _BOUND_MB, f"cats ls --json over {_RUNS:,} runs grew {ls['grown_mb']:.0f} MB"

    control = _measure("rows", home, listing)
    measured = {"rebuild": rebuild, "ls": ls, "rows": control}
    grown = {name: f"{r['grown_mb']:.1f} MB" for name, r in measured.items()}
    print(f"anonymous memory growth over {_RUNS:,} runs: {grown}")
    assert control["count"] == _RUNS
    assert control["grown_mb"] > _BOUND_MB, "the bound would not catch a listing that holds its rows"
