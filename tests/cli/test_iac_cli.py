"""`cats redeploy` and `cats policy check` through the CLI boundary (exit codes, JSON, one-line errors)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from program_locks import PROGRAM_COPY_IGNORE, write_small_lock

from cats_runtime.cas import CID
from cats_runtime.cli import main
from cats_runtime.operations import Node, build_structure, store_structure

pytestmark = pytest.mark.usefixtures("ray_session")
ROOT = Path(__file__).resolve().parents[2]


def cats(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _bom(capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str) -> str:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "fn.py").write_text(
        "def main(ctx):\n    (ctx.output / 'o.txt').write_text(ctx.inputs['d'].read_text()[::-1])\n"
    )
    doc = tmp_path / "d.txt"
    doc.write_text("redeploy me\n")
    rc, out, err = cats(
        capsys, "run", "--function", f"{code}:fn:main", "--input", f"d={doc}", *extra, "--json"
    )
    assert rc == 0, err
    return str(json.loads(out)["bom"])


def _cloud_bom(capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, program: Path) -> str:
    """A BOM naming stack acme's Plant, assembled from a local run (this machine is not that Plant)."""
    with pytest.raises(AssertionError, match="would execute on the local Plant"):
        _bom(capsys, tmp_path, "--structure", str(program), "--stack", "acme")
    local = CID.decode(_bom(capsys, tmp_path))
    with Node.open(home) as node:
        structure = store_structure(build_structure(program, "acme", node.store), node.store)
        bom = node.load(local)
        order = dataclasses.replace(node.load(bom.order), structure=structure)
        invoice = dataclasses.replace(node.load(bom.invoice), order=order.cid)
        cloud = node.sign(dataclasses.replace(bom, order=order.cid, invoice=invoice.cid, structure=structure))
        records = [(order.cid, order), (invoice.cid, invoice), (cloud.cid, cloud)]
        node.store.put_many(r.to_block() for _, r in records)
        node.catalog.index(records)
    return str(cloud.cid)


def test_redeploy_local_bom_matches(
    capsys: pytest.CaptureFixture[str], cats_home: Path, tmp_path: Path
) -> None:
    bom = _bom(capsys, tmp_path)
    rc, out, err = cats(capsys, "redeploy", bom, "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["cloud"] == "local" and result["verdict"] == "match" and result["verification"]
    rc, out, _ = cats(capsys, "redeploy", bom, "--preview")
    assert rc == 0 and "nothing to provision" in out


def test_redeploy_of_a_cloud_bom_without_pulumi_is_exit_7(
    capsys: pytest.CaptureFixture[str], cats_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("pulumi"):
        pytest.skip("the pulumi CLI is installed here; this checks the message when it is not")
    program = tmp_path / "program"
    shutil.copytree(ROOT, program, ignore=shutil.ignore_patterns(*PROGRAM_COPY_IGNORE))
    write_small_lock(program)  # the shipped lock's Environment is 67 MB of wheels
    bom = _cloud_bom(capsys, cats_home, tmp_path, program)
    rc, _, err = cats(capsys, "redeploy", bom)
    assert rc == 7
    assert err.startswith("error: the pulumi CLI is not installed")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_redeploy_bad_input(capsys: pytest.CaptureFixture[str], cats_home: Path) -> None:
    rc, _, err = cats(capsys, "redeploy", "not-a-cid")
    assert rc == 2 and err.startswith("error:")
    rc, _, err = cats(capsys, "redeploy", "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
    assert rc == 3 and "not found" in err
    rc, _, err = cats(
        capsys, "redeploy", "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", "--secret", "oops"
    )
    assert rc == 2 and "KEY=VALUE" in err


def test_policy_check_json_and_unknown_stack(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, err = cats(capsys, "policy", "check", "--project", str(ROOT), "--stack", "hooli", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["passed"] is True and [s["stack"] for s in report["stacks"]] == ["hooli"]
    assert report["stacks"][0]["resources"] > 10
    rc, _, err = cats(capsys, "policy", "check", "--project", str(ROOT), "--stack", "nobody")
    assert rc == 3 and "nobody" in err


def test_redeploy_refuses_a_public_ray_address_in_one_line(
    capsys: pytest.CaptureFixture[str], cats_home: Path, tmp_path: Path
) -> None:
    program = tmp_path / "program"
    shutil.copytree(ROOT, program, ignore=shutil.ignore_patterns(*PROGRAM_COPY_IGNORE))
    bom = _cloud_bom(capsys, cats_home, tmp_path, program)
    rc, _, err = cats(capsys, "redeploy", bom, "--ray-address", "http://203.0.113.7:8265")
    assert rc == 2
    assert err.startswith("error: expected the Ray Jobs address on a loopback address")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
