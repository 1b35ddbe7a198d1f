"""`cats run` pre-flight: what is checkable without Ray fails first, as a person runs the command.

Each case runs `cats` as its own process with RAY_TMPDIR pointed into the test's directory: a
Ray that started (even briefly) would leave its session directory there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cats_runtime.cas import CID
from cats_runtime.operations import Node, new_function
from cats_runtime.records import OrderRecord

pytestmark = pytest.mark.usefixtures("cats_home")


def _cats(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "ray")}
    return subprocess.run(
        [sys.executable, "-c", "from cats_runtime.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("callable_or_param", "message"),
    [
        (
            ["main:mian"],
            "expected a callable 'mian' in module 'main' (fn/main.py), found none; did you mean 'main'?",
        ),
        (["nomod:main"], "expected module 'nomod' as nomod.py or nomod/__init__.py in fn, found neither"),
        (
            ["main:main", "--param", "lable=x"],
            "unknown param 'lable'; did you mean 'label'? (declared: indent, label)",
        ),
        (
            ["main:main", "--param", "indent=two"],
            "expected param 'indent' to be of type integer, found string 'two'",
        ),
    ],
)
def test_preflight_failures_exit_2_before_ray_starts_and_store_nothing(
    tmp_path: Path, cats_home: Path, callable_or_param: list[str], message: str
) -> None:
    new_function(tmp_path / "fn")
    (tmp_path / "data.txt").write_text("a\nb\n")
    entry, *rest = callable_or_param
    proc = _cats(tmp_path, "run", "--function", f"fn:{entry}", "--input", "data=data.txt", *rest)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: {message}\n"
    assert proc.stdout == ""
    assert not (tmp_path / "ray").exists(), "Ray was started"
    with Node.open(cats_home) as node:
        assert node.catalog.runs() == [], "no failed Invoice may be stored"
        assert len(node.repo.pins) == 0, "not even the input is added before the checks pass"


@pytest.mark.usefixtures("ray_session")
def test_the_scaffold_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str], cats_home: Path) -> None:
    from cats_runtime.cli import main

    def cats(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        out, err = capsys.readouterr()
        return int(exc.value.code or 0), out, err

    rc, out, err = cats("new", str(tmp_path / "stats"))
    assert rc == 0 and "cats run --function" in out, err
    assert {p.name for p in (tmp_path / "stats").iterdir()} == {"main.py", "cats.toml", "README.md"}
    rc, _, err = cats("new", str(tmp_path / "stats"))
    assert rc == 2 and "already there" in err and err.count("\n") == 1
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,2\n")
    (data / "b.csv").write_text("x,y\n")
    fn = f"{tmp_path / 'stats'}:main:main"
    rc, out, err = cats("run", "--function", fn, "--input", f"data={data}", "--param", "label=42", "--json")
    assert rc == 0, err
    result = json.loads(out)
    rc, out, _ = cats("get", result["output"], "-o", str(tmp_path / "out"))
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # label is declared a string, so "42" stays text; indent's default is recorded in the Order.
    assert summary == {
        "label": "42",
        "files": {"data/a.csv": {"bytes": 8, "lines": 2}, "data/b.csv": {"bytes": 4, "lines": 1}},
    }
    with Node.open(cats_home) as node:
        order = node.load(CID.decode(result["order"]))
    assert isinstance(order, OrderRecord) and dict(order.params) == {"indent": 2, "label": "42"}
    rc, out, err = cats("run", "--function", fn, "--mode", "map", "--input", f"data={data}", "--json")
    assert rc == 0, err
    rc, out, _ = cats("get", json.loads(out)["output"], "-o", str(tmp_path / "out-map"))
    assert sorted(p.name for p in (tmp_path / "out-map").iterdir()) == ["a.csv.json", "b.csv.json"]
