"""The README's main command: the two-organization demo runs end to end in under 2 minutes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from nodeproc import REPO_ROOT


@pytest.mark.slow
def test_two_orgs_demo() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "two_orgs_demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "re-execution: match" in out
    assert "signature of A: valid" in out
    assert "without a token: HTTP 401" in out
    assert "signed by B's node: signature valid" in out
    assert "(parent: A's BOM)" in out
    assert "made by clean …" in out  # B's lineage reaches A's run
