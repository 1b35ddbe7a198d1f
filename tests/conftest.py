"""Fixtures shared by the whole suite."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps failing examples and caches in ./.hypothesis by default, i.e. in the repository
# root of whoever runs the tests. Examples are reproducible from the seed it prints, so keep no
# database, and put its caches in a directory of this session that goes when the session ends.
settings.register_profile("cats", database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "cats"))
_HYPOTHESIS_HOME: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    home = tempfile.mkdtemp(prefix="cats-test-hypothesis-")
    _HYPOTHESIS_HOME.append(home)
    set_hypothesis_home_dir(home)


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _HYPOTHESIS_HOME:
        shutil.rmtree(home, ignore_errors=True)


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
    # A `cats run` subprocess leaves its home's warm Ray running for the idle timeout (600 s by
    # default): in tests each home is used once, so let those Rays go soon after their run.
    if "CATS_RAY_IDLE_TIMEOUT" not in os.environ:
        monkeypatch.setenv("CATS_RAY_IDLE_TIMEOUT", "5")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray (2 CPUs, no dashboard) for the whole session; started on first use."""
    import ray

    if not ray.is_initialized():
        # Ray drops handles of helper processes it gave up waiting for (a slow machine); their
        # ResourceWarning would surface later as an unrelated test's error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            gc.collect()
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        ray.shutdown()
        gc.collect()
