"""Adding a directory of 100k entries keeps memory flat (entries are streamed into the HAMT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_ENTRIES = 100_000
# The old importer held every entry (and every DirEntry) until the HAMT was built: about
# 0.8 KB per entry, 80+ MB here. The streamed builder holds a few thousand entries and
# SQLite's 8 MiB page cache.
# VmHWM also counts the LMDB pages mapped while storing (page cache): 48 MB into a store here,
# 17-21 MB only-hash; the old in-memory builder grew 92-95 MB, above this bound either way.
_BOUND_MB = 65

_CHILD = """
import json, sys
from cats_runtime.cas import add_path, Repo

def peak_kb():
    # VmHWM: this address space's peak. ru_maxrss would also count the parent's pages that
    # the child had before exec (fork or vfork), which can hide the growth being measured.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

store = None
if sys.argv[2] != "-":
    store = Repo.open(sys.argv[2], sync=False).blocks
before = peak_kb()
result = add_path(sys.argv[1], store)
after = peak_kb()
print(json.dumps({"cid": str(result.cid), "before_kb": before, "after_kb": after}))
"""


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big") / "tree"
    root.mkdir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for i in range(_ENTRIES):
        os.close(os.open(root / f"file-{i:06d}", flags, 0o644))
    return root


def _add_in_child(tree: Path, repo: Path | None) -> dict[str, int | str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), str(repo) if repo else "-"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    out: dict[str, int | str] = json.loads(done.stdout)
    return out


@pytest.mark.parametrize("into_store", [False, True], ids=["only-hash", "store"])
def test_adding_100k_entries_keeps_memory_flat(big_tree: Path, tmp_path: Path, into_store: bool) -> None:
    report = _add_in_child(big_tree, tmp_path / "repo" if into_store else None)
    grown_mb = (int(report["after_kb"]) - int(report["before_kb"])) / 1024
    assert grown_mb < _BOUND_MB, f"adding {_ENTRIES} entries grew peak RSS by {grown_mb:.0f} MB"
    # The same CID in both modes (and the oracle tests pin the HAMT layout to Kubo's).
    assert str(report["cid"]).startswith("bafy")
