from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cats_runtime.operations import Node

MakeFunction = Callable[..., str]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with Node.open(tmp_path / "home") as n:
        yield n


@pytest.fixture
def make_function(tmp_path: Path) -> MakeFunction:
    """Write a one-module code directory; returns the ``DIR:module:callable`` spec."""
    counter = iter(range(1000))

    def make(
        source: str, callable_name: str = "main", module: str = "fn", files: dict[str, str] | None = None
    ) -> str:
        code = tmp_path / f"code{next(counter)}"
        code.mkdir()
        (code / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        for name, text in (files or {}).items():
            (code / name).parent.mkdir(parents=True, exist_ok=True)
            (code / name).write_text(text, encoding="utf-8")
        return f"{code}:{module}:{callable_name}"

    return make


@pytest.fixture
def texts(tmp_path: Path) -> Path:
    folder = tmp_path / "texts"
    folder.mkdir()
    for i, words in enumerate(["alpha beta", "beta gamma gamma", "delta", "alpha alpha alpha"]):
        (folder / f"t{i}.txt").write_text(words + "\n", encoding="utf-8")
    return folder
