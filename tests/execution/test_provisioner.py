"""The Pulumi Automation path, checked up to the CLI boundary (no pulumi CLI on CI machines)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cats_runtime.errors import InvalidInputError, ProvisionError
from cats_runtime.execution._provisioner import Provisioner, missing_credentials, outputs_from

ROOT = Path(__file__).resolve().parents[2]


def _program(tmp_path: Path) -> Path:
    prog = tmp_path / "prog"
    prog.mkdir(exist_ok=True)
    (prog / "Pulumi.yaml").write_text("name: cats-node\nruntime: python\n")
    return prog


def test_missing_pulumi_cli_says_what_to_install(tmp_path: Path) -> None:
    prov = Provisioner(_program(tmp_path), "org", "aws", tmp_path / "state", which=lambda _name: None)
    with pytest.raises(ProvisionError, match=r"pulumi CLI is not installed.*pulumi\.com/docs/install"):
        prov.up()
    with pytest.raises(ProvisionError, match="pulumi CLI is not installed"):
        prov.preview()
    assert not (tmp_path / "state").exists(), "nothing may be written before the prerequisites pass"


@pytest.mark.parametrize(
    ("cloud", "hint"),
    [
        ("aws", "AWS_ACCESS_KEY_ID"),
        ("gcp", "GOOGLE_APPLICATION_CREDENTIALS"),
        ("azure", "ARM_CLIENT_ID"),
        ("existing", "KUBECONFIG"),
    ],
)
def test_missing_credentials_name_the_variable(
    cloud: str, hint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws, ~/.kube ... here
    assert hint in (missing_credentials(cloud, {}) or "")
    prov = Provisioner(
        _program(tmp_path), "org", cloud, tmp_path / "state", which=lambda _n: "/usr/bin/pulumi"
    )
    with pytest.raises(ProvisionError, match=hint):
        prov.check_prerequisites()


def test_credentials_found_in_env_or_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert missing_credentials("aws", {"AWS_PROFILE": "ops"}) is None
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\n")
    assert missing_credentials("existing", {}) is None


def test_unknown_cloud_and_non_programs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="expected a cloud in"):
        missing_credentials("mars", {})
    with pytest.raises(InvalidInputError, match=r"found no Pulumi\.yaml"):
        Provisioner(tmp_path, "org", "aws", tmp_path / "state")
    with pytest.raises(InvalidInputError, match="local Structure needs no provisioning"):
        Provisioner(_program(tmp_path), "org", "local", tmp_path / "state")


def test_workspace_uses_a_local_file_backend_by_default(tmp_path: Path) -> None:
    prov = Provisioner(_program(tmp_path), "org", "aws", tmp_path / "state")
    env = prov.workspace_env()
    assert env["PULUMI_BACKEND_URL"] == f"file://{tmp_path / 'state'}"
    assert "PULUMI_CONFIG_PASSPHRASE" not in env, "no empty passphrase set behind the caller's back"
    told = Provisioner(_program(tmp_path), "org", "aws", tmp_path / "s", backend_url="s3://bucket/state")
    assert told.workspace_env()["PULUMI_BACKEND_URL"] == "s3://bucket/state"


def test_outputs_are_read_from_the_cat_node_exports() -> None:
    class Out:
        def __init__(self, value: object, secret: bool = False) -> None:
            self.value, self.secret = value, secret

    outs = outputs_from(
        {
            "rayJobsAddress": Out("http://cats-ray-head-svc.ray.svc:8265"),
            "kuboRpcAddress": Out("http://cats-kubo.kubo.svc:5001"),
            "kubeconfig": Out("apiVersion: v1 ...", secret=True),
        }
    )
    assert outs.ray_address == "http://cats-ray-head-svc.ray.svc:8265"
    assert outs.kubo_rpc == "http://cats-kubo.kubo.svc:5001"
    assert "kubeconfig" not in outs.raw, "secret outputs must not leave the provisioner"


@pytest.mark.skipif(
    shutil.which("pulumi") is None, reason="needs the pulumi CLI, which is not installable here"
)
def test_preview_of_the_shipped_program_with_the_cli(tmp_path: Path) -> None:  # pragma: no cover
    prov = Provisioner(ROOT, "existing-onprem", "existing", tmp_path / "state")
    assert prov.preview()
