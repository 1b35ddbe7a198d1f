"""`cats redeploy` and `cats policy check` through the CLI boundary (exit codes, JSON, one-line errors)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cats_runtime.cli import main

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
    shutil.copytree(ROOT, program, ignore=shutil.ignore_patterns(".venv", ".git", "tests", "node_modules"))
    bom = _bom(capsys, tmp_path, "--structure", str(program), "--stack", "acme")
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
