"""repo gc runs in flat memory: a bounded-RSS check on 100,000 blocks, in separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])

# 100 pinned DAG-CBOR roots of 1,000 raw leaves each (100,100 blocks); half the pins removed.
_BUILD = """
    import sys
    from cats_runtime.cas import DAG_CBOR, RAW, Block, Repo, dagcbor_encode
    repo = Repo.open(sys.argv[1])
    for r in range(100):
        leaves = [Block.encode(f"leaf-{r}-{i}".encode(), RAW) for i in range(1000)]
        root = Block.encode(dagcbor_encode({"leaves": [leaf.cid for leaf in leaves]}), DAG_CBOR)
        repo.blocks.put_many([*leaves, root])
        repo.pins.add(root.cid)
        if r % 2:
            repo.pins.remove(root.cid)
"""

# Opens the repository, notes its RSS, then either runs gc or holds what gc held before this
# change (every reachable CID in a set, every stored CID in a list); prints the growth of the
# peak RSS over the RSS before, in KiB. The peak is VmHWM, the high-water mark of this process's
# own address space: getrusage's ru_maxrss would do on a fresh process, but Linux carries it over
# fork and exec from the parent, so under pytest it starts at pytest's RSS.
_MEASURE = """
    import sys
    from cats_runtime.cas import Repo, reachable
    repo = Repo.open(sys.argv[1])
    def status_kib(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field))
    before = status_kib("VmRSS:")
    if sys.argv[2] == "gc":
        result = repo.gc()
        assert (result.removed, result.kept) == (50 * 1001, 50 * 1001), result
    else:
        live = reachable(repo.blocks, repo.pins.roots())
        stored = list(repo.blocks)
        assert len(live) == 50 * 1001 and len(stored) == 100 * 1001
    print(status_kib("VmHWM:") - before)
"""


def _run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": _ROOT},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_gc_of_100k_blocks_stays_in_flat_memory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _run(_BUILD, str(home))
    # RSS also counts the pages of the LMDB file the walk maps in: shared, clean page cache the
    # kernel reclaims at will, not memory the process holds. The bound allows for them and
    # 10 MB more; what grows with the number of blocks in Python memory is what it refuses.
    mapped = (home / "blocks" / "packed" / "data.mdb").stat().st_blocks // 2
    bound = mapped + 10_000
    old_way = int(_run(_MEASURE, str(home), "sets"))
    growth = int(_run(_MEASURE, str(home), "gc"))
    assert old_way > bound, (old_way, bound)  # the old gc: every CID in Python sets and lists
    assert growth < bound, (growth, bound, old_way)
