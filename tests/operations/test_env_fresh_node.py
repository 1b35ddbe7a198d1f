"""A fresh node re-executes a BOM from its blocks alone, with every package index cut off."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cats_runtime.cas import CID
from cats_runtime.errors import InvalidInputError
from cats_runtime.operations import Node, build_function, parse_requirements, resolve_environment
from cats_runtime.records import EnvironmentRecord, FunctionRecord

CATS = str(Path(sys.executable).with_name("cats"))
WORKTREE = str(Path(__file__).resolve().parents[2])

DATES = """
import dateutil
from dateutil import parser


def main(ctx):
    text = (ctx.inputs["doc"]).read_text().strip()
    when = parser.isoparse(text)
    (ctx.output / "weekday.txt").write_text(f"{when:%A} (dateutil {dateutil.__version__})\\n")
"""


def _dead_port() -> int:
    # A port nothing listens on: bound, then closed, on loopback only.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _no_index_env(home: Path) -> dict[str, str]:
    dead = f"http://127.0.0.1:{_dead_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        CATS_HOME=str(home),
        PYTHONPATH=WORKTREE,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS="",
        PIP_CONFIG_FILE=os.devnull,  # the machine's pip.conf names local indexes: ignore it
        PIP_INDEX_URL=f"{dead}/simple",
        PIP_EXTRA_INDEX_URL=f"{dead}/simple",
        UV_OFFLINE="1",
        UV_INDEX_URL=f"{dead}/simple",
        UV_DEFAULT_INDEX=f"{dead}/simple",
        HTTP_PROXY=dead,
        HTTPS_PROXY=dead,
        http_proxy=dead,
        https_proxy=dead,
    )
    return env


def _cats(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CATS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False
    )


def test_unclosed_pins_are_refused_naming_the_missing_requirement() -> None:
    with pytest.raises(
        InvalidInputError, match=r"r\.txt:1: python-dateutil==2\.9\.0\.post0 requires six>=1\.5"
    ):
        resolve_environment(parse_requirements("python-dateutil==2.9.0.post0\n", "r.txt"), None)


@pytest.mark.slow
def test_a_fresh_node_verifies_a_bom_with_no_index_reachable(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "fn.py").write_text(DATES)
    (tmp_path / "date.txt").write_text("2024-02-29T12:00:00\n")
    (tmp_path / "requirements.txt").write_text("python-dateutil==2.9.0.post0\nsix==1.17.0\n")
    first, fresh = tmp_path / "node-a", tmp_path / "node-b"
    env_a = {**os.environ, "CATS_HOME": str(first), "PYTHONPATH": WORKTREE}
    ran = _cats(
        [
            "run",
            "--function",
            "code:fn:main",
            "--input",
            "doc=date.txt",
            "--requirements",
            "requirements.txt",
            "--json",
        ],
        env_a,
        tmp_path,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    bom = json.loads(ran.stdout)["bom"]
    exported = _cats(["car", "export", bom, "-o", str(tmp_path / "bom.car")], env_a, tmp_path)
    assert exported.returncode == 0, exported.stderr

    cut = _no_index_env(fresh)
    imported = _cats(["car", "import", str(tmp_path / "bom.car")], cut, tmp_path)
    assert imported.returncode == 0, imported.stderr
    with Node.open(fresh) as node:
        function = node.load(node.load(CID.decode(bom)).function)
        assert isinstance(function, FunctionRecord) and function.environment is not None
        environment = node.load(function.environment)
        assert isinstance(environment, EnvironmentRecord)
        assert [d.name for d in environment.distributions] == ["python-dateutil", "six"]
        assert all(node.store.has(d.wheel) for d in environment.distributions)  # the CAR brought the wheels
        env_cid = function.environment
    verified = _cats(["verify", bom, "--json"], cut, tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["verdict"] == "match", report
    assert not [d for d in report.get("differences", []) if "environment" in d], report
    assert (fresh / "envs" / str(env_cid) / "bin" / "python").exists()  # built here, from the CAS
    with Node.open(fresh) as node:
        invoice = node.load(CID.decode(report["invoice"]))
        facts = invoice.executor
        assert facts["environment"] == str(env_cid)
        assert facts["distributions"] == facts["distributions_declared"]


def test_function_cid_covers_the_environment(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "fn.py").write_text("def main(ctx):\n    pass\n")
    (tmp_path / "a.txt").write_text("six==1.17.0\n")
    (tmp_path / "b.txt").write_text("")
    six, with_six = build_function(f"{code}:fn:main", None, requirements=tmp_path / "a.txt")
    bare, empty = build_function(f"{code}:fn:main", None, requirements=tmp_path / "b.txt")
    plain, none = build_function(f"{code}:fn:main", None)
    assert six.environment is not None and bare.environment is not None and plain.environment is None
    assert six.environment != bare.environment
    assert len({with_six, empty, none}) == 3


def test_a_pin_with_no_wheel_is_an_error_that_says_so() -> None:
    with pytest.raises(
        InvalidInputError, match=r"expected a wheel for every pin .*found none.*not supported"
    ):
        resolve_environment(parse_requirements("six==0.0.1\n", "r.txt"), None)
