"""Temporary files of crashed puts are removed on open and by gc; a live writer's are kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from cats_runtime.cas import Repo

# A writer that stages a (large) block exactly as a put to the file tier does (temporary file
# written, not yet renamed into place), says where, and then waits: killing it with SIGKILL is a
# crash in the middle of a put.
_WRITER = textwrap.dedent(
    """
    import sys
    from cats_runtime.cas import Block, Repo
    repo = Repo.open(sys.argv[1])
    staged = repo.blocks.files._write_temp(Block.encode(sys.argv[2].encode()))  # the large-block tier
    print(staged.tmp, flush=True)
    sys.stdin.read()
    """
)


def _start_writer(home: Path, payload: str) -> tuple[subprocess.Popen[str], Path]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(home), payload],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.name.endswith(".tmp") and tmp.exists(), tmp
    return proc, tmp


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # also closes the pipes


def _finish(proc: subprocess.Popen[str]) -> None:
    proc.communicate(timeout=30)  # closes its stdin: the writer returns


def test_open_removes_a_killed_writers_temp_file_and_keeps_a_live_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Repo.open(home)
    dead, dead_tmp = _start_writer(home, "crashed put")
    live, live_tmp = _start_writer(home, "put in progress")
    try:
        _kill(dead)
        Repo.open(home)
        assert not dead_tmp.exists(), "a kill -9'd writer's temporary file survived the next open"
        assert live_tmp.exists(), "a live writer's temporary file was removed"
    finally:
        _finish(live)


def test_gc_removes_a_killed_writers_temp_file_and_keeps_a_live_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = Repo.open(home)
    live, live_tmp = _start_writer(home, "put in progress")
    dead, dead_tmp = _start_writer(home, "crashed put")
    try:
        _kill(dead)
        repo.gc()
        assert not dead_tmp.exists(), "repo gc left a kill -9'd writer's temporary file"
        assert live_tmp.exists(), "repo gc removed a live writer's temporary file"
    finally:
        _finish(live)


def test_old_temp_files_go_whatever_their_name_says(tmp_path: Path) -> None:
    repo = Repo.open(tmp_path / "home")
    shard = repo.blocks.root / "AA"
    shard.mkdir()
    odd = shard / ".something.tmp"  # not our naming: only the age rule can remove it
    odd.write_bytes(b"x")
    assert repo.blocks.remove_stale_temp_files() == 0
    os.utime(odd, (1, 1))
    assert repo.blocks.remove_stale_temp_files() == 1
    assert not odd.exists()
