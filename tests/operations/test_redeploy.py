"""`cats redeploy BOM`: a local redeploy from nothing but a BOM CID, and the Pulumi path up to the CLI."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from program_locks import PROGRAM_COPY_IGNORE, write_small_lock

from cats_runtime.cas import _unixfs
from cats_runtime.cas._car import export_car, import_car
from cats_runtime.errors import InvalidInputError, ProvisionError, RecordError
from cats_runtime.operations import (
    Node,
    _structure,
    build_function,
    build_structure,
    local_structure,
    run,
    store_structure,
    verify,
)
from cats_runtime.operations._redeploy import materialize_program, redeploy, required_secrets
from cats_runtime.records import StructureRecord, VerificationRecord

MakeFunction = Callable[..., str]
pytestmark = pytest.mark.usefixtures("ray_session")
ROOT = Path(__file__).resolve().parents[2]

FN = """
def main(ctx):
    text = ctx.inputs["doc"].read_text()
    (ctx.output / "upper.txt").write_text(text.upper() + str(ctx.params["n"]) * ctx.seed)
"""


def _run(node: Node, make_function: MakeFunction, tmp_path: Path, structure: StructureRecord | None = None):  # type: ignore[no-untyped-def]
    _, fn = build_function(make_function(FN), node.store)
    doc = tmp_path / "doc.txt"
    doc.write_text("hello\n")
    inputs = {"doc": _unixfs.add_path(doc, node.store).cid}
    return run(node, function=fn, inputs=inputs, params={"n": 7}, seed=2, structure=structure)


def test_local_redeploy_from_only_a_bom_cid_in_a_fresh_store(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    out = _run(node, make_function, tmp_path)
    assert out.bom is not None
    car = io.BytesIO()
    export_car(node.store, [out.bom], car)
    with Node.open(tmp_path / "other-org") as fresh:
        assert not fresh.store.has(out.bom)
        roots = import_car(fresh.store, io.BytesIO(car.getvalue()))
        assert roots == [out.bom]
        result = redeploy(fresh, out.bom)
        assert result.cloud == "local" and result.action == "verify" and result.program_dir is None
        assert result.verification is not None
        assert result.verification.verdict == "match"
        assert result.verification.found == out.output
        record = fresh.load(result.verification.verification)
        assert isinstance(record, VerificationRecord) and record.bom == out.bom
        assert fresh.catalog.verifications_for(out.bom) == [result.verification.verification]


def test_local_preview_executes_nothing(node: Node, make_function: MakeFunction, tmp_path: Path) -> None:
    out = _run(node, make_function, tmp_path)
    assert out.bom is not None
    result = redeploy(node, out.bom, preview=True)
    assert result.action == "preview" and result.verification is None
    assert "nothing to provision" in (result.preview or "")
    assert node.catalog.verifications_for(out.bom) == []


def _cloud_bom(node: Node, make_function: MakeFunction, tmp_path: Path):  # type: ignore[no-untyped-def]
    program = tmp_path / "program"
    shutil.copytree(
        ROOT,
        program,
        ignore=shutil.ignore_patterns(*PROGRAM_COPY_IGNORE),
    )
    write_small_lock(program)  # the shipped lock's Environment is 67 MB of wheels
    structure = build_structure(program, "acme", node.store)
    structure_cid = store_structure(structure, node.store)
    # Embedded Ray is not acme's Plant, so `run` refuses to record this Structure; the BOM of a
    # run on that Plant is assembled here from a local run's records, as that Plant would sign it.
    with pytest.raises(InvalidInputError, match="would execute on the local Plant"):
        _run(node, make_function, tmp_path, structure=structure)
    local = _run(node, make_function, tmp_path)
    local_bom = node.load(local.bom)
    local_order = node.load(local_bom.order)
    order = dataclasses.replace(local_order, structure=structure_cid)
    invoice = dataclasses.replace(node.load(local_bom.invoice), order=order.cid)
    bom = node.sign(
        dataclasses.replace(local_bom, order=order.cid, invoice=invoice.cid, structure=structure_cid)
    )
    records = [(order.cid, order), (invoice.cid, invoice), (bom.cid, bom)]
    node.store.put_many(r.to_block() for _, r in records)
    node.catalog.index(records)
    return dataclasses.replace(local, bom=bom.cid, order=order.cid, invoice=invoice.cid), structure


def test_cloud_redeploy_materializes_the_hashed_program_then_stops_at_the_missing_cli(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    out, structure = _cloud_bom(node, make_function, tmp_path)
    with pytest.raises(ProvisionError, match=r"pulumi CLI is not installed"):
        redeploy(node, out.bom, which=lambda _name: None)
    [work] = list((node.home / "redeploy").iterdir())
    program = work / "program"
    # The materialized program is exactly the hashed one: re-adding it gives the Structure's CID.
    assert _unixfs.add_path(program, None).cid == structure.program
    assert (program / "stacks" / "Pulumi.acme.yaml").is_file()
    assert not (program / "stacks" / "Pulumi.globex.yaml").exists(), "other orgs' stacks are not hashed"
    assert "secure:" not in (program / "stacks" / "Pulumi.acme.yaml").read_text()


def test_cloud_redeploy_refuses_other_sdk_versions_than_the_structure_recorded(
    node: Node, make_function: MakeFunction, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, structure = _cloud_bom(node, make_function, tmp_path)
    installed = _structure.plugin_pins()
    assert installed["pulumi-gcp"]
    # This machine now runs another provider SDK (hence plugin) than the one the program was hashed with.
    monkeypatch.setattr(_structure, "plugin_pins", lambda: {**installed, "pulumi-gcp": "10.0.0"})
    with pytest.raises(
        ProvisionError, match=rf"pulumi-gcp=={re.escape(installed['pulumi-gcp'])} \(installed: 10\.0\.0\)"
    ):
        redeploy(node, out.bom, which=lambda _name: "/usr/local/bin/pulumi")
    [work] = list((node.home / "redeploy").iterdir())
    assert _unixfs.add_path(work / "program", None).cid == structure.program


def test_cloud_redeploy_names_missing_credentials_and_secrets(
    node: Node, make_function: MakeFunction, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = _cloud_bom(node, make_function, tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ProvisionError, match="no aws credentials found: set AWS_ACCESS_KEY_ID"):
        redeploy(node, out.bom, which=lambda _name: "/usr/local/bin/pulumi")
    secrets = required_secrets(next((node.home / "redeploy").iterdir()) / "program", "acme")
    assert secrets
    with pytest.raises(ProvisionError, match="supply " + secrets[0]):
        redeploy(
            node,
            out.bom,
            which=lambda _name: "/usr/local/bin/pulumi",
            env={"AWS_PROFILE": "ops", "PULUMI_CONFIG_PASSPHRASE": "a real passphrase"},
        )


@pytest.mark.skipif(shutil.which("pulumi") is not None, reason="checks the boundary where the CLI is absent")
def test_automation_api_boundary_without_the_cli(
    node: Node, make_function: MakeFunction, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pinned CLI's install downloads from get.pulumi.com: a dead proxy makes it fail here the
    # same way on a machine that could reach it (never a real CLI installed by a test).
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    # Past our own prerequisite checks (a fake `which`, credentials, every secret supplied), the
    # Automation API itself looks for the CLI: its FileNotFoundError must come out as one clear
    # ProvisionError, and no state may be left claiming a deployment.
    out, structure = _cloud_bom(node, make_function, tmp_path)
    program = materialize_program(node, structure, tmp_path / "peek")
    secrets = {k: "value" for k in required_secrets(program, "acme")}
    assert secrets, "the acme stack ships a secure: value, so redeploy must ask for it"
    # The Structure pins the CLI: with none usable, redeploy installs that version (no network
    # here, so that install fails in one line) or reports the CLI missing.
    boundary = r"could not install the pinned pulumi CLI \d+\.\d+\.\d+ into |pulumi CLI is not installed"
    open_before = _deleted_open_files()
    with pytest.raises(ProvisionError, match=boundary) as info:
        redeploy(
            node,
            out.bom,
            which=lambda _n: "/usr/local/bin/pulumi",
            env={"AWS_PROFILE": "ops", "PULUMI_CONFIG_PASSPHRASE": "a real passphrase"},
            secrets=secrets,
        )
    assert "\n" not in str(info.value)
    # The failed installer's temporary script is closed now, not whenever the cyclic GC runs
    # (that would be a ResourceWarning in some later, unrelated test).
    assert _deleted_open_files() == open_before


def _deleted_open_files() -> set[str]:
    """Removed NamedTemporaryFile-style files (``<tempdir>/tmp*``) this process still holds open."""
    fds = Path("/proc/self/fd")
    prefix = os.path.join(tempfile.gettempdir(), "tmp")
    found = set()
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while listing
            continue
        if target.startswith(prefix) and target.endswith(" (deleted)"):
            found.add(target)
    return found


def test_redeploy_refuses_what_is_not_a_bom(node: Node, make_function: MakeFunction, tmp_path: Path) -> None:
    doc = tmp_path / "x.txt"
    doc.write_text("x")
    cid = _unixfs.add_path(doc, node.store).cid
    with pytest.raises(RecordError, match="expected a CATs record"):
        redeploy(node, cid)
    _, fn = build_function(make_function(FN), node.store)
    with pytest.raises(RecordError, match=r"to be a cats/bom record, found cats/function@1"):
        redeploy(node, fn)


def test_verify_of_a_cloud_bom_on_embedded_ray_records_the_local_structure(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    out, _ = _cloud_bom(node, make_function, tmp_path)
    result = verify(node, out.bom)
    assert result.verdict == "match"
    record = node.load(result.verification)
    # The re-execution ran on this machine: its Verification must not claim acme's Plant.
    assert isinstance(record, VerificationRecord) and node.load(record.structure) == local_structure()


def test_cloud_redeploy_refuses_a_public_ray_address_before_provisioning(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    # Ray's Jobs API runs code for whoever reaches it: only a loopback port-forward is accepted.
    out, _ = _cloud_bom(node, make_function, tmp_path)
    with pytest.raises(InvalidInputError, match="expected the Ray Jobs address on a loopback address"):
        redeploy(
            node, out.bom, ray_address="http://203.0.113.7:8265", which=lambda _n: "/usr/local/bin/pulumi"
        )
    assert not (node.home / "redeploy").exists(), "nothing materialized or provisioned"
