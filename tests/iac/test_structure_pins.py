"""The Structure CID covers what gets deployed: the policy pack and the provider plugin versions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from iac_harness import REPO

from cats_runtime.operations import _structure
from cats_runtime.operations._structure import build_structure, plugin_pins


@pytest.fixture
def program(tmp_path: Path) -> Path:
    root = tmp_path / "program"
    root.mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copyfile(REPO / name, root / name)
    for folder in ("components", "policies", "stacks"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_policy_pack_change_changes_the_cid(program: Path) -> None:
    before = build_structure(program, "acme", None).program
    rules = program / "policies" / "rules.py"
    rules.write_text(rules.read_text() + "\n# a rule changed\n")
    assert build_structure(program, "acme", None).program != before


def test_plugin_version_change_changes_the_cid(program: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = build_structure(program, "acme", None).program
    pins = plugin_pins()
    assert pins["pulumi-kubernetes"]  # installed in the IaC environment
    monkeypatch.setattr(_structure, "plugin_pins", lambda: {**pins, "pulumi-aws": "0.0.1"})
    assert build_structure(program, "acme", None).program != before
