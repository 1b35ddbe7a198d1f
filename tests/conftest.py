"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture
def cats_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty CATs home, also exported as $CATS_HOME for subprocesses."""
    home = tmp_path / "cats-home"
    monkeypatch.setenv("CATS_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _no_real_home(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    # A test must never touch the developer's ~/.cats: point HOME-derived defaults at a temp dir.
    if "CATS_HOME" not in os.environ:
        monkeypatch.setenv("CATS_HOME", str(tmp_path_factory.mktemp("default-home")))
