"""`cats structure`: the Structure CID of a stack and what it covers, as a person and a script run it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from schemas import validate
from terminal import MODES, REPO_ROOT, Mode, assert_fails, assert_ok
from terminal import cats as run_cats

from cats_runtime.cas import CID
from cats_runtime.operations import Node, build_structure, store_structure
from cats_runtime.operations._structure import IAC_LOCK, lock_pins, plugin_pins
from cats_runtime.records import EnvironmentRecord

STACKS = sorted(p.name.split(".")[1] for p in (REPO_ROOT / "stacks").glob("Pulumi.*.yaml"))


def _blocks(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file()] if home.exists() else []


@pytest.fixture(scope="module")
def resolved_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home where `cats structure --store` resolved the shipped lock's Environment once (67 MB)."""
    home = tmp_path_factory.mktemp("resolved") / "home"
    done = run_cats(
        "pipe", "structure", "--dir", str(REPO_ROOT), "--stack", "acme", "--store", home=home, timeout=600
    )
    assert_ok(done)
    return home


def _files(home: Path) -> dict[str, int]:
    # LMDB's lock.mdb is its reader table, rewritten by every reader that opens the store; the
    # blocks themselves (data.mdb and the block files) are what must not change.
    return {str(p): p.stat().st_mtime_ns for p in _blocks(home) if p.name != "lock.mdb"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack(resolved_home: Path, stack: str, mode: Mode) -> None:
    home = resolved_home
    before = _files(home)
    text = run_cats(mode, "structure", "--dir", str(REPO_ROOT), "--stack", stack, home=home, timeout=120)
    assert_ok(text)
    doc = run_cats(
        mode, "structure", "--dir", str(REPO_ROOT), "--stack", stack, "--json", home=home, timeout=120
    )
    assert_ok(doc)
    data = json.loads(doc.out)
    validate("structure", data)
    # The same CID `cats run --structure . --stack ORG` records (built and stored the library's way).
    record = build_structure(REPO_ROOT, stack, None)
    assert data["program"] == str(record.program)
    assert data["structure"] == str(record.to_block().cid)
    assert data["stack"] == stack and data["stored"] is False
    assert f"stacks/Pulumi.{stack}.yaml" in data["files"] and IAC_LOCK in data["files"]
    assert data["plugins"] == plugin_pins()
    assert data["locks"][0]["path"] == IAC_LOCK
    assert {c["name"] for c in data["charts"]} >= {"kuberay-operator"}
    first = text.out.splitlines()
    assert first[0] == f"structure: {data['structure']}" and f"program: {data['program']}" in first
    assert f"kubernetes: {data['kubernetes_version']}" in first or data["cloud"] == "existing"
    # The program's own Environment: the shipped lock's wheels, taken from the home's memo.
    env = data["environment"]
    assert env["cid"] == str(record.environment) and env["reused"] is True
    assert {d["name"] for d in env["distributions"]} == set(lock_pins(REPO_ROOT / IAC_LOCK))
    assert f"environment: {env['cid']} ({len(env['distributions'])} wheels" in text.out
    assert "from this home's memo" in text.out
    assert _files(home) == before, "nothing is written without --store"


@pytest.mark.parametrize("mode", MODES)
def test_store_puts_the_program_and_the_record_in_the_home(tmp_path: Path, mode: Mode) -> None:
    home = tmp_path / "home"
    result = run_cats(
        mode,
        "structure",
        "--dir",
        str(REPO_ROOT),
        "--stack",
        "acme",
        "--store",
        "--json",
        home=home,
        timeout=120,
    )
    assert_ok(result)
    data = json.loads(result.out)
    validate("structure", data)
    assert data["stored"] is True
    with Node.open(home) as node:
        record = node.load(CID.decode(data["structure"]))
        assert str(record.program) == data["program"]
        assert node.store.has(CID.decode(data["program"]))
        assert store_structure(record, node.store) == CID.decode(data["structure"])
        # The program's Environment and every wheel are in the home, remembered for the next run.
        environment = node.load(record.environment)
        assert isinstance(environment, EnvironmentRecord) and data["environment"]["reused"] is False
        assert all(node.store.has(d.wheel) for d in environment.distributions)
        assert [p.read_text() for p in (home / "envs" / ".resolved").iterdir()] == [str(record.environment)]


@pytest.mark.parametrize("mode", MODES)
def test_unknown_stack_is_one_line_exit_2(tmp_path: Path, mode: Mode) -> None:
    result = run_cats(
        mode, "structure", "--dir", str(REPO_ROOT), "--stack", "nosuchorg", home=tmp_path / "h", timeout=120
    )
    assert_fails(result, 2, "Pulumi.nosuchorg.yaml")
    json_result = run_cats(
        mode,
        "structure",
        "--dir",
        str(REPO_ROOT),
        "--stack",
        "nosuchorg",
        "--json",
        home=tmp_path / "h",
        timeout=120,
    )
    assert json_result.code == 2
    validate("error", json.loads(json_result.out))


@pytest.mark.parametrize("mode", MODES)
def test_a_lock_disagreeing_with_the_installed_sdks_is_refused(tmp_path: Path, mode: Mode) -> None:
    program = tmp_path / "program"
    shutil.copytree(
        REPO_ROOT,
        program,
        ignore=shutil.ignore_patterns(
            ".*", "__pycache__", "tests", "docs", "benchmarks", "examples", "cats_runtime"
        ),
    )
    lock = program / IAC_LOCK
    installed = plugin_pins()["pulumi-kubernetes"]
    lock.write_text(lock.read_text().replace(f"pulumi-kubernetes=={installed}", "pulumi-kubernetes==4.0.0"))
    home = tmp_path / "h"
    result = run_cats(mode, "structure", "--dir", str(program), "--stack", "globex", home=home, timeout=120)
    line = assert_fails(result, 2, f"pin pulumi-kubernetes=={installed}")
    assert "found pulumi-kubernetes==4.0.0" in line and "make lock-iac" in line
    assert result.out == ""


def test_stack_is_required(tmp_path: Path) -> None:
    result = run_cats("pipe", "structure", home=tmp_path / "h", timeout=60)
    assert result.code == 2 and "--stack" in result.err and "Traceback" not in result.err
