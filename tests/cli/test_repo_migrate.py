"""`cats repo migrate`: a layout-1 repository's block files packed, idempotent, crash-safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from schemas import validate
from terminal import REPO_ROOT, cats

from cats_runtime.cas import RAW, Block, FSBlockStore, PackedBlockStore, Repo


def _layout_1(home: Path, count: int) -> list[Block]:
    """A home as the layout-1 code left it: version 1, one file per block, a pin database."""
    home.mkdir(parents=True)
    (home / "version").write_text("1\n")
    blocks = [Block.encode(f"old block {i}".encode().ljust(1200, b"."), RAW) for i in range(count)]
    FSBlockStore(home / "blocks").put_many(blocks)
    return blocks


def _files(home: Path) -> int:
    return sum(1 for p in (home / "blocks").rglob("*.data"))


def test_migrate_packs_every_block_and_running_it_again_does_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    blocks = _layout_1(home, 300)
    big = Block.encode(os.urandom(1024 * 1024 + 1), RAW)  # over the pack limit: stays a file
    FSBlockStore(home / "blocks").put(big)
    corrupt = FSBlockStore(home / "blocks").path_of(blocks[0].cid)
    corrupt.chmod(0o644)
    corrupt.write_bytes(b"x" * 1200)  # left in place, for repo verify to name
    first = cats("pipe", "repo", "migrate", "--json", home=home)
    assert first.code == 0, first.describe()
    result = json.loads(first.out)
    validate("repo-migrate", result)
    assert result == {"packed": 299, "bytes_packed": 299 * 1200, "large": 1, "corrupt": 1}
    assert _files(home) == 2  # the large block and the corrupt one
    again = cats("pipe", "repo", "migrate", "--json", home=home)
    assert json.loads(again.out) == {"packed": 0, "bytes_packed": 0, "large": 1, "corrupt": 1}
    verify = cats("pipe", "repo", "verify", "--json", home=home)
    assert verify.code == 4 and [c["cid"] for c in json.loads(verify.out)["corrupt"]] == [str(blocks[0].cid)]
    store = PackedBlockStore(home / "blocks")
    assert all(store.get(b.cid) == b.data for b in blocks[1:]) and store.get(big.cid) == big.data


def test_migrate_on_a_terminal_shows_progress_and_a_summary(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _layout_1(home, 50)
    shown = cats("pty", "repo", "migrate", home=home)
    assert shown.code == 0, shown.describe()
    assert "packed 50 blocks" in shown.out
    assert any("packing block files" in line for line in shown.shown), shown.describe()


_KILLED = """
    import sys
    from cats_runtime.cas import Repo
    repo = Repo.open(sys.argv[1])
    def advance(n):
        print(n, flush=True)
        sys.stdin.readline()  # the test kills us here: after a batch is packed, mid-run
    repo.migrate(advance)
"""


def test_kill_9_during_migrate_loses_nothing_and_a_rerun_finishes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    blocks = _layout_1(home, 9000)  # three batches of 4096
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED), str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert int(proc.stdout.readline()) == 4096
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stdin.close()
    repo = Repo.open(home)
    assert 0 < _files(home) < 9000
    assert all(repo.blocks.has(b.cid) for b in blocks)
    assert repo.migrate().packed == 9000 - 4096
    assert _files(home) == 0
    report = repo.verify()
    assert report.checked == 9000 and report.corrupt == ()
