"""`cats run / verify / lineage / log / ls / catalog` end to end, in-process on the session's Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from program_locks import write_small_lock

from cats_runtime.cas import PackedBlockStore
from cats_runtime.cli import main

pytestmark = pytest.mark.usefixtures("ray_session")


def cats(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture
def code(tmp_path: Path) -> Path:
    d = tmp_path / "code"
    d.mkdir()
    (d / "fn.py").write_text(
        "import os\n\n"
        "def upper(ctx):\n"
        "    print('upper running')\n"
        "    text = ctx.inputs['doc'].read_text()\n"
        "    (ctx.output / 'out.txt').write_text(text.upper() * ctx.params.get('n', 1))\n\n"
        "def broken(ctx):\n"
        "    raise RuntimeError('broken on purpose')\n\n"
        "def noisy(ctx):\n"
        "    (ctx.output / 'noise').write_bytes(os.urandom(4))\n\n"
        "def each(ctx):\n"
        "    (ctx.output / ctx.datum.name).write_text(ctx.datum.path.read_text()[::-1])\n"
    )
    return d


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    p = tmp_path / "doc.txt"
    p.write_text("abc\n")
    return p


def test_run_verify_lineage_log_ls(
    capsys: pytest.CaptureFixture[str], cats_home: Path, code: Path, doc: Path
) -> None:
    rc, out, err = cats(
        capsys, "run", "--function", f"{code}:fn:upper", "--input", f"doc={doc}", "--param", "n=2", "--json"
    )
    assert rc == 0, err
    result = json.loads(out)
    assert result["status"] == "succeeded" and result["bom"] and result["output"]
    bom = result["bom"]
    rc, out, _ = cats(
        capsys, "run", "--function", f"{code}:fn:upper", "--input", f"doc={doc}", "--param", "n=2"
    )
    assert rc == 0 and f"bom    {bom}" in out and "already ran" in out
    rc, out, _ = cats(capsys, "verify", bom)
    assert rc == 0 and out.startswith("match:")
    rc, out, _ = cats(capsys, "verify", "--structural", bom, "--json")
    assert rc == 0 and json.loads(out)["verdict"] == "intact"
    rc, out, _ = cats(capsys, "log", bom)
    assert rc == 0 and "upper running" in out
    rc, out, _ = cats(capsys, "ls", "--json")
    assert rc == 0 and [r["bom"] for r in json.loads(out)] == [bom]
    [row] = json.loads(out)
    assert row["issuer"].startswith("did:key:z") and row["code"].startswith("bafybei")
    assert row["params"] == {"n": 2} and row["seed"] == 0
    assert row["verdict"] == "match" and row["verification"].startswith("bafyrei")
    fn = row["function_cid"]
    rc, out, _ = cats(capsys, "lineage", result["output"])
    assert rc == 0 and f"made by upper …{fn[-6:]} BOM {bom} [verified: match]" in out
    assert f"issuer {row['issuer']}" in out and f"code {row['code']}" in out
    assert 'seed 0  params {"n":2}' in out
    rc, out, _ = cats(capsys, "lineage", bom, "--format", "mermaid")
    assert rc == 0 and out.startswith("graph LR")
    rc, out, _ = cats(capsys, "lineage", bom, "--format", "json")
    [node] = [n for n in json.loads(out)["nodes"] if n["cid"] == bom]
    assert node["issuer"] == row["issuer"] and node["params"] == {"n": 2} and node["verdict"] == "match"
    rc, out, _ = cats(capsys, "catalog", "rebuild", "--json")
    assert rc == 0 and json.loads(out)["by_type"]["cats/bom@1"] == 1


def test_failed_run_exits_1_with_invoice_and_log(
    capsys: pytest.CaptureFixture[str], cats_home: Path, code: Path, doc: Path
) -> None:
    rc, out, err = cats(capsys, "run", "--function", f"{code}:fn:broken", "--input", f"doc={doc}")
    assert rc == 1
    assert "(failed)" in out and "log " in out
    assert "RuntimeError: broken on purpose" in err and err.count("\n") == 1
    invoice = out.split()[1]
    rc, out, _ = cats(capsys, "log", invoice)
    assert rc == 0 and "Traceback" in out and "broken on purpose" in out
    rc, out, _ = cats(capsys, "ls")
    assert "failed" in out and invoice in out


def test_mismatch_exits_4_with_diff(
    capsys: pytest.CaptureFixture[str], cats_home: Path, code: Path, doc: Path
) -> None:
    rc, out, _ = cats(capsys, "run", "--function", f"{code}:fn:noisy", "--input", f"doc={doc}", "--json")
    bom = json.loads(out)["bom"]
    rc, out, err = cats(capsys, "verify", bom)
    assert rc == 4
    assert out.startswith("mismatch:") and "changed: noise" in out and "did not reproduce" in err
    verification = out.split("verification ")[1].split()[0]
    # The run succeeded, but its BOM did not reproduce: ls and lineage say so, naming the record.
    for _ in range(2):  # before and after the catalog is rebuilt from the blocks
        rc, out, _ = cats(capsys, "ls", "--json")
        [row] = json.loads(out)
        assert row["status"] == "succeeded" and row["verdict"] == "mismatch"
        assert row["verification"] == verification
        rc, out, _ = cats(capsys, "ls")
        assert f"NOT REPRODUCED (mismatch): verification {verification}" in out
        rc, out, _ = cats(capsys, "lineage", bom)
        assert f"[NOT REPRODUCED: mismatch, verification {verification}]" in out
        rc, _, _ = cats(capsys, "catalog", "rebuild")
        assert rc == 0


def test_map_mode_cli(
    capsys: pytest.CaptureFixture[str], cats_home: Path, code: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a").write_text("ab")
    (folder / "b").write_text("cd")
    rc, out, err = cats(
        capsys,
        "run",
        "--function",
        f"{code}:fn:each",
        "--mode",
        "map",
        "--input",
        f"files={folder}",
        "--json",
    )
    assert rc == 0, err
    assert json.loads(out)["computed"] == 2


@pytest.mark.parametrize(
    ("args", "code_", "message"),
    [
        (["--function", "nodir", "--input", "doc={doc}"], 2, "DIR:module:callable"),
        (
            [
                "--function",
                "{code}:fn:upper",
                "--input",
                "doc=bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
            ],
            3,
            "not in the store",
        ),
        (["--function", "{code}:fn:upper", "--input", "doc={doc}", "--param", "x"], 2, "key=value"),
        (["--function", "{code}:fn:upper", "--input", "noequals"], 2, "name=CID or name=PATH"),
        (["--function", "{code}:fn:upper", "--input", "doc={doc}", "--stack", "acme"], 2, "together"),
    ],
)
def test_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str],
    cats_home: Path,
    code: Path,
    doc: Path,
    args: list[str],
    code_: int,
    message: str,
) -> None:
    rc, _, err = cats(capsys, "run", *[a.format(code=code, doc=doc) for a in args])
    assert rc == code_ and message in err and err.startswith("error: ") and err.count("\n") == 1


def test_a_cloud_structure_on_embedded_ray_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], cats_home: Path, code: Path, doc: Path, tmp_path: Path
) -> None:
    prog = tmp_path / "prog"
    (prog / "stacks").mkdir(parents=True)
    (prog / "Pulumi.yaml").write_text("name: node\nruntime: python\nstackConfigDir: stacks\n")
    (prog / "__main__.py").write_text("")
    (prog / "stacks" / "Pulumi.acme.yaml").write_text(
        "encryptionsalt: v1:abc\nconfig:\n  cats:cloud: existing\n"
        "  cats:token:\n    secure: v1:SECRETCIPHER\n"
    )
    write_small_lock(prog)
    rc, out, err = cats(
        capsys,
        "run",
        "--function",
        f"{code}:fn:upper",
        "--input",
        f"doc={doc}",
        "--structure",
        str(prog),
        "--stack",
        "acme",
    )
    # Embedded Ray is not the Plant of stack acme: recording that Structure would be a false claim.
    assert rc == 2, err
    assert err.count("\n") == 1 and "would execute on the local Plant" in err and "--ray-address" in err
    assert out == ""
    assert not (cats_home / "blocks").exists() or not list(PackedBlockStore(cats_home / "blocks"))
    assert not (cats_home / "envs").exists(), "no memo names blocks the home does not have"
