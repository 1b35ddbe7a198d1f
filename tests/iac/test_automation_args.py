"""What the Automation API is given: the policy pack, a real secrets key, the pinned CLI.

No pulumi CLI here: the arguments are checked against the installed SDK's own signatures, and
the prerequisite checks run for real up to where the CLI would start.
"""

from __future__ import annotations

import inspect
import json
import shutil
from importlib import metadata
from pathlib import Path

import pytest
from iac_harness import REPO
from pulumi import automation as auto

from cats_runtime.cas import MemoryBlockStore, _unixfs
from cats_runtime.errors import InvalidInputError, ProvisionError
from cats_runtime.execution._provisioner import Provisioner
from cats_runtime.operations._structure import (
    CLI_PIN_FILE,
    IAC_LOCK,
    PINS_FILE,
    build_structure,
    cli_pin_entry,
    recorded_cli_version,
)

PULUMI = "/opt/pulumi/bin/pulumi"


@pytest.fixture
def program(tmp_path: Path) -> Path:
    root = tmp_path / "program"
    root.mkdir()
    for name in ("Pulumi.yaml", "__main__.py", IAC_LOCK, CLI_PIN_FILE):
        shutil.copyfile(REPO / name, root / name)
    for folder in ("components", "policies", "stacks"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def no_passphrase(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config, ~/.aws here


def _prov(program: Path, tmp_path: Path, cloud: str = "aws", **kw: object) -> Provisioner:
    env = {"AWS_PROFILE": "ops"} | dict(kw.pop("env", {}))  # type: ignore[call-overload]
    return Provisioner(
        program, "acme", cloud, tmp_path / "home" / "state", which=lambda _n: PULUMI, env=env, **kw
    )  # type: ignore[arg-type]


def test_preview_and_up_get_the_programs_policy_pack(program: Path, tmp_path: Path) -> None:
    args = _prov(program, tmp_path).operation_args()
    assert args["policy_packs"] == [str(program / "policies")]
    assert (program / "policies" / "PulumiPolicy.yaml").is_file()
    # The installed SDK accepts exactly these keywords on both operations.
    inspect.signature(auto.Stack.up).bind(None, **args)
    inspect.signature(auto.Stack.preview).bind(None, **args)


def test_a_program_without_its_policy_pack_is_not_deployed(program: Path, tmp_path: Path) -> None:
    shutil.rmtree(program / "policies")
    prov = _prov(program, tmp_path, env={"PULUMI_CONFIG_PASSPHRASE": "long enough"})
    with pytest.raises(ProvisionError, match=r"expected the policy pack policies/PulumiPolicy\.yaml"):
        prov.check_prerequisites()


@pytest.mark.usefixtures("no_passphrase")
def test_a_local_backend_needs_a_passphrase_or_a_secrets_provider(program: Path, tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE"):
        _prov(program, tmp_path).check_prerequisites()
    with pytest.raises(ProvisionError, match="PULUMI_CONFIG_PASSPHRASE"):  # empty is no passphrase
        _prov(program, tmp_path, env={"PULUMI_CONFIG_PASSPHRASE": ""}).check_prerequisites()
    _prov(program, tmp_path, env={"PULUMI_CONFIG_PASSPHRASE": "correct horse"}).check_prerequisites()
    _prov(program, tmp_path, env={"PULUMI_CONFIG_PASSPHRASE_FILE": "/run/secrets/p"}).check_prerequisites()
    _prov(program, tmp_path, secrets_provider="awskms://alias/cats").check_prerequisites()
    # A managed backend keeps its own key.
    _prov(program, tmp_path, backend_url="https://api.pulumi.com").check_prerequisites()
    # And nothing sets an empty one behind the caller's back any more.
    assert "PULUMI_CONFIG_PASSPHRASE" not in _prov(program, tmp_path).workspace_env()


@pytest.mark.usefixtures("no_passphrase")
def test_existing_accepts_the_kubeconfig_secret_without_KUBECONFIG(program: Path, tmp_path: Path) -> None:
    bare = _prov(program, tmp_path, "existing", env={"PULUMI_CONFIG_PASSPHRASE": "x" * 16})
    with pytest.raises(ProvisionError, match="set KUBECONFIG or the stack's cats:kubeconfig"):
        bare.check_prerequisites()
    given = _prov(
        program,
        tmp_path,
        "existing",
        env={"PULUMI_CONFIG_PASSPHRASE": "x" * 16},
        secrets={"cats:kubeconfig": "apiVersion: v1\nkind: Config\n"},
    )
    given.check_prerequisites()  # no exit 7: the secret is the cluster's credentials


def test_the_cli_pin_is_committed_recorded_and_installed_at_that_version(
    program: Path, tmp_path: Path
) -> None:
    version = (REPO / CLI_PIN_FILE).read_text().strip()
    assert version == metadata.version("pulumi"), "the CLI is pinned at the SDK's version"
    assert cli_pin_entry(program) == {"cli": version}
    # The Structure records it, so a BOM names the CLI its Plant was deployed with...
    materialized = tmp_path / "materialized"
    store = MemoryBlockStore()
    record = build_structure(program, "acme", store)
    assert record.program is not None
    _unixfs.get(store, record.program, materialized)
    assert json.loads((materialized / PINS_FILE).read_text())["cli"] == version
    assert recorded_cli_version(materialized) == version
    # ...and the Provisioner installs exactly that one (PulumiCommand.install's own signature).
    prov = _prov(materialized, tmp_path, cli_version=version)
    args = prov.cli_install_args()
    assert args is not None
    assert str(args["version"]) == version
    assert args["root"] == str(tmp_path / "home" / "pulumi-cli" / version)
    inspect.signature(auto.PulumiCommand.install).bind(**args)
    assert _prov(materialized, tmp_path).cli_install_args() is None


def test_the_cli_pin_changes_the_cid_and_a_bad_pin_is_refused(program: Path) -> None:
    before = build_structure(program, "acme", None).program
    (program / CLI_PIN_FILE).write_text("3.999.0\n")
    assert build_structure(program, "acme", None).program != before
    (program / CLI_PIN_FILE).write_text("latest\n")
    with pytest.raises(
        InvalidInputError, match=r"expected one X\.Y\.Z Pulumi CLI version in pulumi-cli\.version"
    ):
        build_structure(program, "acme", None)


def test_missing_cli_names_the_pinned_version(program: Path, tmp_path: Path) -> None:
    prov = Provisioner(
        program, "acme", "aws", tmp_path / "state", which=lambda _n: None, cli_version="3.272.0"
    )
    with pytest.raises(
        ProvisionError, match=r"pulumi CLI is not installed.*\(version 3\.272\.0, the Structure's pin\)"
    ):
        prov.check_prerequisites()
