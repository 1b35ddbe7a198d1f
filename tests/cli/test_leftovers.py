"""Nothing left behind: a refused home, the demos, the test suite's own hypothesis database; and
the CLI's command modules registered in one place, without import side effects."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CATS = str(Path(sys.executable).with_name("cats"))
CLI_DIR = REPO_ROOT / "cats_runtime" / "cli"


def _env(**extra: str) -> dict[str, str]:
    # No CATS_HOME unless given: the demos choose (and must clean up) their own homes.
    env = {k: v for k, v in os.environ.items() if k != "CATS_HOME"}
    return {**env, "PYTHONPATH": str(REPO_ROOT), **extra}


@pytest.mark.parametrize("command", [["add", "notes.txt"], ["ls"], ["node", "id"], ["pin", "ls"]])
def test_a_refused_home_is_left_exactly_as_it_was(tmp_path: Path, command: list[str]) -> None:
    foreign = tmp_path / "not-a-home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    args = [a if a != "notes.txt" else str(foreign / a) for a in command]
    proc = subprocess.run(
        [CATS, "--home", str(foreign), *args], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert proc.returncode == 10, proc.stderr
    assert proc.stderr.count("\n") == 1 and "expected an empty directory or a CATs repository" in proc.stderr
    assert sorted(os.listdir(foreign)) == ["notes.txt"]  # no repo.lock, blocks/, keys/ ...


def test_demo_chain_removes_its_temporary_home_even_when_a_step_fails(tmp_path: Path) -> None:
    # CATS=false makes the first step fail at once: the EXIT trap must still remove the home it made.
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "examples" / "demo.sh")],
        capture_output=True,
        text=True,
        env=_env(CATS="false", TMPDIR=str(tmp_path)),
        timeout=60,
    )
    assert proc.returncode != 0
    assert "CATS_HOME=" + str(tmp_path) in proc.stdout  # it did create its home under TMPDIR
    assert list(tmp_path.glob("cats-demo-*")) == []


def test_demo_chain_keeps_a_home_the_user_named(tmp_path: Path) -> None:
    home = tmp_path / "mine"
    home.mkdir()
    subprocess.run(
        ["bash", str(REPO_ROOT / "examples" / "demo.sh")],
        capture_output=True,
        env=_env(CATS="false", CATS_HOME=str(home), TMPDIR=str(tmp_path)),
        timeout=60,
    )
    assert home.is_dir()


def test_two_orgs_demo_removes_its_workdir_when_terminated(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "examples" / "two_orgs_demo.py")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(TMPDIR=str(tmp_path)),
        start_new_session=True,
    )
    try:
        # Terminate it as soon as it has written its dataset (before any Ray run starts).
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("cats-two-orgs-*/readings/quito.csv")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the demo wrote no dataset within 60 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert list(tmp_path.glob("cats-two-orgs-*")) == []


def test_the_suite_keeps_no_hypothesis_database_in_the_working_directory(tmp_path: Path) -> None:
    # Run one hypothesis test from another directory, as `cd somewhere && pytest /repo/tests/...`.
    test = REPO_ROOT / "tests" / "cas" / "test_cid.py"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{test}::test_text_decoder_never_crashes",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / ".hypothesis").exists()


_COMMAND_MODULES = {
    "_cas_commands": {"add", "cat", "get", "show", "car", "repo", "pin"},
    "_run_commands": {"run", "verify", "lineage", "log", "ls", "catalog"},
    "_node_commands": {"node", "fetch"},
    "_iac_commands": {"policy", "redeploy"},
}


def _relative_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module] if node.module else [a.name for a in node.names])
    return names


@pytest.mark.parametrize(
    "module", sorted(p.stem for p in CLI_DIR.glob("_*.py") if p.stem not in ("__init__", "_main"))
)
def test_no_cli_module_but_main_imports_a_command_module(module: str) -> None:
    # The circle this breaks: _app.main imported _commands, which imported every command module,
    # each of which imported _app for the group to register itself on (and _iac imported _run).
    forbidden = {p.stem for p in CLI_DIR.glob("_*_commands.py")} | {"_main", "_commands"}
    assert _relative_imports(CLI_DIR / f"{module}.py") & forbidden == set()


def test_the_cats_group_is_exactly_the_union_of_the_modules_commands() -> None:
    from cats_runtime.cli import _main, cli

    seen: set[str] = set()
    for module in _main._COMMAND_MODULES:
        own = set(module.cli.commands)  # a module's group holds only that module's commands
        assert own and not own & seen, module.__name__
        seen |= own
        short = module.__name__.rsplit(".", 1)[1]
        assert _COMMAND_MODULES.get(short, set()) <= own
    assert set(cli.commands) == seen
