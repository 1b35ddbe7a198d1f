"""The Structure CID covers what gets deployed: the dependency lock, the provider plugin versions,
the policy pack, the program's imported helpers and the Kubernetes version; nothing else."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from iac_harness import REPO
from program_locks import SIX_16, SIX_17, write_small_lock

from cats_runtime.errors import IntegrityError, InvalidInputError
from cats_runtime.operations import _structure
from cats_runtime.operations._structure import (
    IAC_LOCK,
    PLUGIN_DISTRIBUTIONS,
    build_structure,
    describe_structure,
    lock_pins,
    plugin_pins,
)

STACKS = sorted(p.name.split(".")[1] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))


@pytest.fixture
def program(tmp_path: Path) -> Path:
    root = tmp_path / "program"
    root.mkdir()
    for name in ("Pulumi.yaml", "__main__.py", IAC_LOCK):
        shutil.copyfile(REPO / name, root / name)
    for folder in ("components", "policies", "stacks"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _cid(program: Path, stack: str = "acme") -> str:
    return str(build_structure(program, stack, None).program)


def test_the_repository_commits_a_hashed_lock_of_the_installed_sdks() -> None:
    text = (REPO / IAC_LOCK).read_text()
    pins = lock_pins(REPO / IAC_LOCK)
    installed = plugin_pins()
    # Every Pulumi SDK of the program, at the version the deployment from here runs with.
    assert {name: pins.get(name) for name in PLUGIN_DISTRIBUTIONS} == installed
    assert "pyyaml" in pins  # __main__.py imports yaml
    assert "make lock-iac" in text  # how to refresh it


def test_every_requirement_of_the_lock_carries_a_hash() -> None:
    entries = re.split(r"\n(?=[a-z0-9])", (REPO / IAC_LOCK).read_text().split("\n", 2)[2])
    assert len(entries) >= len(PLUGIN_DISTRIBUTIONS)
    for entry in entries:
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), entry


@pytest.mark.parametrize("stack", STACKS)
def test_the_repository_structure_hashes_the_lock(stack: str) -> None:
    coverage = describe_structure(REPO, stack, None)
    assert IAC_LOCK in coverage.files
    assert [lock.path for lock in coverage.locks] == [IAC_LOCK]
    assert coverage.locks[0].pins == {k: v for k, v in plugin_pins().items() if v is not None}


def test_lock_change_changes_the_cid(program: Path) -> None:
    # The lock's Environment is resolved (wheels hashed), so a small lock keeps this quick.
    write_small_lock(program, SIX_17)
    before = build_structure(program, "acme", None)
    write_small_lock(program, SIX_16)
    after = build_structure(program, "acme", None)
    assert after.program != before.program and after.environment != before.environment
    # Another wheel of the same version (one hash differs): no wheel has it, so it is refused.
    digest = SIX_17.split("sha256:")[1].strip()
    write_small_lock(program, SIX_17.replace(digest, digest[::-1]))
    with pytest.raises(IntegrityError):
        build_structure(program, "acme", None)


def test_a_lock_pinning_another_sdk_version_is_refused(program: Path) -> None:
    lock = program / IAC_LOCK
    installed = plugin_pins()["pulumi-aws"]
    assert installed
    lock.write_text(lock.read_text().replace(f"pulumi-aws=={installed}", "pulumi-aws==7.0.0"))
    with pytest.raises(
        InvalidInputError, match=rf"pin pulumi-aws=={re.escape(installed)} .*found pulumi-aws==7\.0\.0"
    ):
        build_structure(program, "acme", None)


@pytest.mark.parametrize("lock_name", ["uv.lock", "poetry.lock"])
def test_toml_locks_are_checked_too(program: Path, lock_name: str) -> None:
    (program / IAC_LOCK).unlink()
    (program / lock_name).write_text(
        'version = 1\n[[package]]\nname = "Pulumi_Kubernetes"\nversion = "4.0.0"\n'
    )
    with pytest.raises(InvalidInputError, match="pulumi-kubernetes"):
        build_structure(program, "acme", None)


def test_pipfile_lock_is_checked_too(program: Path) -> None:
    (program / IAC_LOCK).unlink()
    (program / "Pipfile.lock").write_text('{"default": {"pulumi": {"version": "==3.0.0"}}}')
    with pytest.raises(InvalidInputError, match=r"found pulumi==3\.0\.0"):
        build_structure(program, "acme", None)


def test_policy_pack_change_changes_the_cid(program: Path) -> None:
    before = _cid(program)
    rules = program / "policies" / "rules.py"
    rules.write_text(rules.read_text() + "\n# a rule changed\n")
    assert _cid(program) != before


def test_plugin_version_change_changes_the_cid(program: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A lock that leaves pulumi-aws out (a lock naming it must agree with the installed SDK, and
    # its Environment is resolved: no wheel of a made-up version exists), so cats-pins.json alone
    # records the installed version.
    write_small_lock(program)
    before = _cid(program)
    pins = plugin_pins()
    assert pins["pulumi-kubernetes"]  # installed in the IaC environment
    monkeypatch.setattr(_structure, "plugin_pins", lambda: {**pins, "pulumi-aws": "0.0.1"})
    assert _cid(program) != before


@pytest.mark.parametrize(
    "helper", ["components/_validate.py", "components/_capacity.py", "components/plant/_common.py"]
)
def test_imported_helper_change_changes_the_cid(program: Path, helper: str) -> None:
    # Each of these is imported by the program (directly or through components/__init__.py).
    name = helper.removesuffix(".py").replace("/", ".")
    importer = "\n".join(p.read_text() for p in (program / "components").rglob("*.py"))
    assert re.search(rf"from \.+{re.escape(name.rsplit('.', 1)[-1])} import", importer)
    before = _cid(program)
    path = program / helper
    path.write_text(path.read_text() + "\nHELPER_CHANGED = True\n")
    assert _cid(program) != before


def test_kubernetes_version_change_changes_the_cid(program: Path) -> None:
    stack = program / "stacks" / "Pulumi.acme.yaml"
    before = describe_structure(program, "acme", None)
    assert before.kubernetes_version == "1.33"
    stack.write_text(
        stack.read_text().replace('cats:kubernetesVersion: "1.33"', 'cats:kubernetesVersion: "1.34"')
    )
    after = describe_structure(program, "acme", None)
    assert after.kubernetes_version == "1.34"
    assert after.record.program != before.record.program and after.cid != before.cid


def test_another_orgs_stack_does_not_change_the_cid(program: Path) -> None:
    before = _cid(program, "acme")
    other = program / "stacks" / "Pulumi.globex.yaml"
    other.write_text(other.read_text() + "  cats:nodeCountMax: 5\n")
    (program / "stacks" / "Pulumi.newco.yaml").write_text("config:\n  cats:cloud: aws\n")
    assert _cid(program, "acme") == before
    assert "stacks/Pulumi.globex.yaml" not in describe_structure(program, "acme", None).files


@pytest.mark.parametrize("stack", STACKS)
def test_coverage_of_every_shipped_stack(stack: str) -> None:
    c = describe_structure(REPO, stack, None)
    assert f"stacks/Pulumi.{stack}.yaml" in c.files
    assert [f for f in c.files if f.startswith("stacks/")] == [f"stacks/Pulumi.{stack}.yaml"]
    assert {
        "Pulumi.yaml",
        "__main__.py",
        "cats-pins.json",
        "policies/rules.py",
        "components/catnode.py",
    } <= set(c.files)
    assert dict(c.plugins) == plugin_pins()
    charts = {ch.name: ch for ch in c.charts}
    assert charts["kuberay-operator"].version == "1.7.0"
    assert charts["kuberay-operator"].repository == "https://ray-project.github.io/kuberay-helm/"
    # The EKS autoscaler chart is deployed by aws stacks only.
    assert ("cluster-autoscaler" in charts) == (c.record.cloud == "aws")
    assert {im.key for im in c.images} == {"cats:nodeImage", "cats:rayImage", "cats:kuboImage"}
    assert all(im.digest and re.fullmatch(r"sha256:[0-9a-f]{64}", im.digest) for im in c.images)
    # Pinned in every stack of a managed cloud (unset would be the cloud's default at deploy time).
    assert (c.kubernetes_version is not None) == (c.record.cloud != "existing")


def test_images_set_in_the_stack_are_reported_as_the_stacks(program: Path) -> None:
    image = "rayproject/ray:2.52.0-py311@sha256:" + "ab" * 32
    stack = program / "stacks" / "Pulumi.acme.yaml"
    stack.write_text(stack.read_text() + f"  cats:rayImage: {image}\n")
    images = {im.key: im for im in describe_structure(program, "acme", None).images}
    assert images["cats:rayImage"].image == image and images["cats:rayImage"].source == "stack"
    assert images["cats:kuboImage"].source == "default"


def test_chart_version_is_read_from_the_program(program: Path) -> None:
    kuberay = program / "components" / "kuberay.py"
    kuberay.write_text(
        kuberay.read_text().replace('KUBERAY_CHART_VERSION = "1.7.0"', 'KUBERAY_CHART_VERSION = "1.8.0"')
    )
    charts = {ch.name: ch.version for ch in describe_structure(program, "acme", None).charts}
    assert charts["kuberay-operator"] == "1.8.0"


def test_a_helper_module_beside_the_program_that_it_imports_is_hashed(program: Path) -> None:
    # Code outside components/ that the program imports runs at deploy time: it is in the Structure.
    (program / "unused.py").write_text("X = 1\n")
    before = _cid(program)
    (program / "naming.py").write_text("PREFIX = 'cats'\n")
    assert _cid(program) == before, "a module nothing imports is not part of the program"
    main = program / "__main__.py"
    main.write_text("import naming  # a helper of the program\n" + main.read_text())
    with_helper = describe_structure(program, "acme", None)
    assert "naming.py" in with_helper.files and "unused.py" not in with_helper.files
    (program / "naming.py").write_text("PREFIX = 'other'\n")
    assert _cid(program) != str(with_helper.record.program)


def test_a_package_imported_by_a_component_is_hashed_with_what_it_imports(program: Path) -> None:
    (program / "shared").mkdir()
    (program / "shared" / "__init__.py").write_text("from deep import VALUE\n")
    (program / "deep.py").write_text("VALUE = 1\n")
    helper = program / "components" / "_validate.py"
    helper.write_text("import shared.x  # noqa\n" + helper.read_text())
    files = describe_structure(program, "acme", None).files
    assert {"shared/__init__.py", "deep.py"} <= set(files)
