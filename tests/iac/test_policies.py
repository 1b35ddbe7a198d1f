"""Each policy rule catches a deliberately bad resource; the shipped program and stacks pass."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from iac_cases import PLANTS, build_node
from iac_harness import REPO, RegisteredResource
from pulumi_policy import EnforcementLevel

from policies.offline import check_resources
from policies.rules import POLICIES, plaintext_secret_keys

FIXTURES = Path(__file__).parent / "fixtures"
CASES: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "bad_resources.yaml").read_text())
LEVELS = {p.name: p.enforcement_level for p in POLICIES}


def resources_of(case: dict[str, Any]) -> list[RegisteredResource]:
    return [
        RegisteredResource(
            r["type"],
            r["name"],
            r["inputs"],
            r.get("custom", True),
            f"urn:pulumi:t::p::{r['type']}::{r['name']}",
        )
        for r in case["resources"]
    ]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['policy']}:{c['resources'][-1]['name']}" for c in CASES])
def test_rule_catches_bad_resource(case: dict[str, Any]) -> None:
    violations = check_resources(resources_of(case))
    caught = [v for v in violations if v.policy == case["policy"]]
    assert caught, f"{case['policy']} missed {case['resources']}; got {violations}"
    assert all(v.enforcement == LEVELS[case["policy"]].value for v in caught)  # type: ignore[union-attr]
    assert all(v.urn and v.urn.startswith("urn:pulumi:") for v in caught)


def test_every_rule_has_a_bad_fixture() -> None:
    assert {p.name for p in POLICIES} == {c["policy"] for c in CASES}


def test_levels_are_stated() -> None:
    mandatory = {n for n, level in LEVELS.items() if level == EnforcementLevel.MANDATORY}
    assert mandatory == {
        "kubo-rpc-cluster-only",
        "kubo-rpc-network-policy",
        "ray-ports-private",
        "images-pinned-by-digest",
        "container-resources",
        "api-endpoint-restricted",
        "bounded-autoscaling",
        "no-plaintext-secret-config",
        "placeholder-image-digest",
        "pod-host-access",
        "ray-auth-required",
        "pods-fit-node-type",
    }
    assert all(level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY) for level in LEVELS.values())


def test_cap_is_configurable() -> None:
    pool = RegisteredResource(
        "aws:eks/nodeGroup:NodeGroup", "ng", {"scalingConfig": {"maxSize": 30}}, True, "urn:x"
    )
    assert not [v for v in check_resources([pool]) if v.policy == "bounded-autoscaling"]
    tight = check_resources([pool], policy_config={"bounded-autoscaling": {"maxNodes": 20}})
    assert [v.policy for v in tight if v.enforcement == "mandatory"] == ["bounded-autoscaling"]
    assert "above the cap of 20" in next(v.message for v in tight if v.policy == "bounded-autoscaling")


def test_plaintext_secret_keys() -> None:
    keys = {
        "cats:nodeApiToken": False,
        "cats:rayAuthToken": True,
        "cats:dbPassword": False,
        "aws:secretKey": False,
        "cats:sshPublicKey": False,
        "cats:region": False,
        "cats:kubeconfig": False,
    }
    assert plaintext_secret_keys(keys) == [
        "aws:secretKey",
        "cats:dbPassword",
        "cats:kubeconfig",
        "cats:nodeApiToken",
    ]


@pytest.mark.parametrize("cloud", sorted(PLANTS))
def test_shipped_components_pass_mandatory_rules(cloud: str) -> None:
    built = build_node(cloud, example=True)
    mandatory = [v for v in check_resources(built.resources) if v.enforcement == "mandatory"]
    assert not mandatory
    # Outside an example stack the placeholder digests block the deployment, and nothing else does.
    real = build_node(cloud)
    assert {v.policy for v in check_resources(real.resources) if v.enforcement == "mandatory"} == {
        "placeholder-image-digest"
    }


def run_offline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "policies.offline", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_offline_fails_bad_program() -> None:
    completed = run_offline("--project", str(FIXTURES / "bad_project"), "--stack", "bad", "--json")
    assert completed.returncode == 1, completed.stderr
    document = json.loads(completed.stdout)
    assert document["passed"] is False
    found = {v["policy"] for v in document["violations"] if v["enforcement"] == "mandatory"}
    assert {
        "kubo-rpc-cluster-only",
        "kubo-rpc-network-policy",
        "images-pinned-by-digest",
        "container-resources",
        "ray-ports-private",
        "no-plaintext-secret-config",
    } <= found
    urns = {v["urn"] for v in document["violations"] if v["policy"] == "kubo-rpc-cluster-only"}
    assert urns == {"urn:pulumi:bad::bad-node::kubernetes:core/v1:Service::kubo-rpc-public"}
    assert "not-so-secret" not in completed.stdout


def test_offline_text_report_names_rule_level_and_resource() -> None:
    completed = run_offline("--project", str(FIXTURES / "bad_project"), "--stack", "bad")
    assert completed.returncode == 1
    assert (
        "[mandatory] kubo-rpc-cluster-only: kubo-rpc-public (kubernetes:core/v1:Service)" in completed.stdout
    )
    assert "bad: FAILED" in completed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", ".", "--stack", "nope"], "unknown stack 'nope'"),
        (["--project", "tests", "--stack", "acme"], "expected a Pulumi project"),
        (["--stack", "acme"], "the following arguments are required: --project"),
    ],
)
def test_offline_usage_errors_exit_2(args: list[str], message: str) -> None:
    completed = run_offline(*args)
    assert completed.returncode == 2
    assert message in completed.stderr


def test_refused_stack_value_is_a_violation_not_a_crash(tmp_path: Path) -> None:
    project = tmp_path / "node"
    project.mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        (project / name).write_text((REPO / name).read_text())
    for folder in ("components", "policies"):
        shutil.copytree(REPO / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "stacks").mkdir()
    stack = (REPO / "stacks" / "Pulumi.hooli.yaml").read_text()
    (project / "stacks" / "Pulumi.t.yaml").write_text(stack + "  cats:rayImage: rayproject/ray:2.52.0\n")
    completed = run_offline("--project", str(project), "--stack", "t", "--json")
    assert completed.returncode == 1, completed.stderr
    violations = json.loads(completed.stdout)["violations"]
    assert [v["policy"] for v in violations] == ["stack-config-valid"]
    assert "rayImage: expected an image pinned" in violations[0]["message"]
