"""cats_runtime.operations.check_policies: one offline policy run per stack, in a subprocess."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from iac_harness import REPO

from cats_runtime.errors import InvalidInputError, NotFoundError
from cats_runtime.operations import PolicyReport, check_policies
from policies.offline import STACK_CONFIG_RULE

SHIPPED = {"acme", "globex", "initech", "hooli"}


@pytest.fixture(scope="module")
def report() -> PolicyReport:
    return check_policies(REPO)


def test_every_shipped_stack_passes(report: PolicyReport) -> None:
    assert {s.stack for s in report.stacks} == SHIPPED
    assert report.passed
    for result in report.stacks:
        assert result.passed and not result.mandatory, result.mandatory
        assert result.resources >= 15
        # Example stacks: the placeholder digests are flagged (advisory) until an organization sets
        # its own; outside an example stack they are mandatory (test_deploy.py).
        assert {v.policy for v in result.advisory} - {"node-disk-encryption"} == {"example-stack"}


def test_named_stacks_only() -> None:
    partial = check_policies(REPO, ["hooli"])
    assert [s.stack for s in partial.stacks] == ["hooli"]


def test_unknown_stack() -> None:
    with pytest.raises(NotFoundError, match="found 'nope'"):
        check_policies(REPO, ["nope"])


def test_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="expected a Pulumi project"):
        check_policies(tmp_path)


def test_failing_stack_is_reported_not_raised(tmp_path: Path) -> None:
    project = tmp_path / "node"
    shutil.copytree(REPO / "tests" / "iac" / "fixtures" / "bad_project", project)
    shutil.copytree(REPO / "policies", project / "policies", ignore=shutil.ignore_patterns("__pycache__"))
    # the pack checks pod sizes against the program's own capacity table (components/_capacity.py)
    shutil.copytree(REPO / "components", project / "components", ignore=shutil.ignore_patterns("__pycache__"))
    result = check_policies(project)
    assert not result.passed
    assert "kubo-rpc-cluster-only" in {v.policy for v in result.stacks[0].mandatory}


def test_program_that_crashes_is_an_input_error(tmp_path: Path) -> None:
    project = tmp_path / "node"
    shutil.copytree(REPO / "tests" / "iac" / "fixtures" / "bad_project", project)
    shutil.copytree(REPO / "policies", project / "policies", ignore=shutil.ignore_patterns("__pycache__"))
    # the pack checks pod sizes against the program's own capacity table (components/_capacity.py)
    shutil.copytree(REPO / "components", project / "components", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "__main__.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(InvalidInputError, match="boom"):
        check_policies(project)


@pytest.mark.parametrize("stack", ["acme", "globex", "initech"])
def test_a_managed_stack_without_a_kubernetes_version_is_refused(tmp_path: Path, stack: str) -> None:
    # Unset, the cloud picks its default at deploy time: the Structure could not pin the version.
    project = tmp_path / "node"
    project.mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copyfile(REPO / name, project / name)
    for folder in ("components", "policies", "stacks"):
        shutil.copytree(REPO / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = project / "stacks" / f"Pulumi.{stack}.yaml"
    text = config.read_text()
    assert 'cats:kubernetesVersion: "1.33"\n' in text
    config.write_text(text.replace('  cats:kubernetesVersion: "1.33"\n', ""))
    result = check_policies(project, [stack]).stacks[0]
    assert not result.passed
    assert [v.policy for v in result.mandatory] == [STACK_CONFIG_RULE]
    assert "kubernetesVersion: expected a pinned Kubernetes version" in result.mandatory[0].message
