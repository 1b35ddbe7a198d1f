"""The core commands end to end: add, cat, get, show, car, repo, pin — outputs, exit codes, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from block_faults import tamper

from cats_runtime.cas import CID, Repo
from cats_runtime.cli import main


def cats(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(300_000))  # two chunks: a dag-pb file node
    (root / "empty").write_bytes(b"")
    return root


def test_add_get_cat_show_round_trip(
    capsys: pytest.CaptureFixture[str], cats_home: Path, tree: Path, tmp_path: Path
) -> None:
    rc, out, err = cats(capsys, "add", str(tree), "--json")
    assert rc == 0, err
    added = json.loads(out)
    root = CID.decode(added["cid"])
    assert root.version == 1 and added["pinned"] is True and added["size"] == 300_006
    rc, out, _ = cats(capsys, "add", str(tree))
    assert out.strip() == str(root), "adding twice gives the same CID"
    rc, _, err = cats(capsys, "get", str(root), "-o", str(tmp_path / "copy"))
    assert rc == 0, err
    assert (tmp_path / "copy" / "sub" / "b.bin").read_bytes() == (tree / "sub" / "b.bin").read_bytes()
    assert (tmp_path / "copy" / "empty").read_bytes() == b""
    rc, out, _ = cats(capsys, "show", str(root), "--json")
    shown = json.loads(out)
    assert shown["codec"] == "dag-pb" and shown["unixfs"]["type"] == "directory"
    assert sorted(link["name"] for link in shown["links"]) == ["a.txt", "empty", "sub"]
    file_cid = CID.decode(next(link["cid"] for link in shown["links"] if link["name"] == "a.txt"))
    rc, out, _ = cats(capsys, "show", str(file_cid))
    assert rc == 0 and out.startswith("raw block") and "6 bytes" in out


def test_cat_streams_file_bytes(
    capsysbinary: pytest.CaptureFixture[bytes], cats_home: Path, tree: Path
) -> None:
    with pytest.raises(SystemExit):
        main(["add", str(tree / "sub" / "b.bin")])
    cid = capsysbinary.readouterr().out.decode().strip()
    with pytest.raises(SystemExit) as exc:
        main(["cat", cid])
    assert exc.value.code == 0
    assert capsysbinary.readouterr().out == (tree / "sub" / "b.bin").read_bytes()


def test_only_hash_and_cid_version_0(capsys: pytest.CaptureFixture[str], cats_home: Path, tree: Path) -> None:
    rc, out, _ = cats(capsys, "add", "--only-hash", str(tree))
    assert rc == 0
    assert not cats_home.exists(), "--only-hash must not create or write anything"
    rc, out, _ = cats(capsys, "add", "--cid-version", "0", "-n", str(tree / "a.txt"))
    assert out.strip().startswith("Qm")


def test_car_export_import_into_a_fresh_home(
    capsys: pytest.CaptureFixture[str],
    cats_home: Path,
    tree: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rc, out, _ = cats(capsys, "add", str(tree))
    root = out.strip()
    car = tmp_path / "x.car"
    rc, out, err = cats(capsys, "car", "export", root, "-o", str(car), "--json")
    assert rc == 0, err
    assert json.loads(out)["blocks"] >= 5
    other = tmp_path / "other-home"
    rc, out, err = cats(capsys, "--home", str(other), "car", "import", str(car))
    assert rc == 0, err
    assert out.strip() == root
    rc, out, _ = cats(capsys, "--home", str(other), "pin", "ls", "--json")
    assert [p["cid"] for p in json.loads(out)] == [root]
    rc, out, _ = cats(capsys, "--home", str(other), "repo", "verify", "--json")
    assert rc == 0 and json.loads(out)["corrupt"] == []


def test_garbage_car_changes_nothing(
    capsys: pytest.CaptureFixture[str], cats_home: Path, tree: Path, tmp_path: Path
) -> None:
    rc, out, _ = cats(capsys, "add", str(tree))
    car = tmp_path / "x.car"
    cats(capsys, "car", "export", out.strip(), "-o", str(car))
    truncated = tmp_path / "cut.car"
    truncated.write_bytes(car.read_bytes()[:-100])
    other = tmp_path / "other-home"
    rc, _, err = cats(capsys, "--home", str(other), "car", "import", str(truncated))
    assert rc == 2 and err.startswith("error:") and "Traceback" not in err
    assert list(Repo.open(other).blocks) == [], "a failed import stores no block"
    assert Repo.open(other).pins.ls() == []


def test_repo_verify_finds_corruption_and_gc_respects_pins(
    capsys: pytest.CaptureFixture[str], cats_home: Path, tree: Path
) -> None:
    rc, out, _ = cats(capsys, "add", str(tree / "a.txt"))
    kept = CID.decode(out.strip())
    rc, out, _ = cats(capsys, "add", "--no-pin", str(tree / "sub" / "b.bin"))
    dropped = CID.decode(out.strip())
    rc, out, _ = cats(capsys, "repo", "gc", "--json")
    assert rc == 0 and json.loads(out)["removed"] >= 3
    repo = Repo.open(cats_home)
    assert repo.blocks.has(kept) and not repo.blocks.has(dropped)
    tamper(repo.blocks, kept, b"ALPHA\n")
    rc, out, _ = cats(capsys, "repo", "verify")
    assert rc == 4 and str(kept) in out and "1 corrupt" in out
    rc, _, err = cats(capsys, "cat", str(kept))
    assert rc == 4 and str(kept) in err and "corrupt" in err


def test_pin_commands(capsys: pytest.CaptureFixture[str], cats_home: Path, tree: Path) -> None:
    rc, out, _ = cats(capsys, "add", "--no-pin", str(tree / "a.txt"))
    cid = out.strip()
    assert cats(capsys, "pin", "add", cid, "--name", "keep")[0] == 0
    rc, out, _ = cats(capsys, "pin", "ls")
    assert cid in out and "keep" in out
    assert cats(capsys, "pin", "rm", cid)[0] == 0
    rc, _, err = cats(capsys, "pin", "rm", cid)
    assert rc == 3 and "error:" in err
    missing = str(CID.compute(b"never stored"))
    rc, _, err = cats(capsys, "pin", "add", missing)
    assert rc == 3 and missing in err


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (["cat", "bafy-not-a-cid"], 2, "expected a CID, found 'bafy-not-a-cid'"),
        (["cat", "QmZZZ"], 2, "CID"),
        (["cat", str(CID.compute(b"nope"))], 3, "not found"),
        (["get", str(CID.compute(b"nope")), "-o", "/tmp/never-written-by-cats"], 3, "not found"),
        (["show", "zQmNope"], 2, "CID"),
    ],
)
def test_bad_input_is_one_line_and_a_meaningful_exit_code(
    capsys: pytest.CaptureFixture[str], cats_home: Path, args: list[str], code: int, match: str
) -> None:
    rc, _, err = cats(capsys, *args)
    assert rc == code
    assert err.startswith("error:") and match in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not Path("/tmp/never-written-by-cats").exists()


def test_add_skips_hidden_entries_like_ipfs_add_and_says_so(
    capsys: pytest.CaptureFixture[str], cats_home: Path, tree: Path
) -> None:
    plain = cats(capsys, "add", "-n", str(tree))[1].strip()
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("ref\n")
    (tree / "sub" / ".DS_Store").write_bytes(b"\0")
    rc, out, err = cats(capsys, "add", "-n", str(tree))
    assert rc == 0 and out.strip() == plain, "hidden entries must not change the CID (ipfs add -r)"
    assert "skipped 2 hidden entries" in err and "-H" in err
    rc, out, err = cats(capsys, "add", "-n", "-H", str(tree), "--json")
    with_hidden = json.loads(out)
    assert with_hidden["cid"] != plain and with_hidden["skipped_hidden"] == 0 and "skipped" not in err
    assert cats(capsys, "add", "-n", "--hidden", str(tree))[1].strip() == with_hidden["cid"]


def test_add_profiles_and_cid_version_agree(
    capsys: pytest.CaptureFixture[str], cats_home: Path, tree: Path
) -> None:
    v0 = cats(capsys, "add", "-n", "--cid-version", "0", str(tree))[1].strip()
    assert cats(capsys, "add", "-n", "--profile", "unixfs-v0-2015", str(tree))[1].strip() == v0
    rc, out, _ = cats(capsys, "add", "-n", "--profile", "unixfs-v1-2025", str(tree), "--json")
    assert rc == 0 and json.loads(out)["profile"] == "unixfs-v1-2025"
    rc, _, err = cats(capsys, "add", "-n", "--profile", "unixfs-v1-2025", "--cid-version", "0", str(tree))
    assert rc == 2 and "found both" in err and "Traceback" not in err


def test_cat_get_show_accept_cid_slash_path(
    capsysbinary: pytest.CaptureFixture[bytes], cats_home: Path, tree: Path, tmp_path: Path
) -> None:
    def run(*args: str) -> tuple[int, bytes, str]:
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        out, err = capsysbinary.readouterr()
        return int(exc.value.code or 0), out, err.decode()

    root = run("add", str(tree))[1].decode().strip()
    rc, out, err = run("cat", f"{root}/sub/b.bin")
    assert rc == 0 and out == (tree / "sub" / "b.bin").read_bytes(), err
    rc, _, err = run("get", f"/ipfs/{root}/sub", "-o", str(tmp_path / "sub"))
    assert rc == 0, err
    assert (tmp_path / "sub" / "b.bin").read_bytes() == (tree / "sub" / "b.bin").read_bytes()
    rc, out, _ = run("show", f"{root}/a.txt")
    assert rc == 0 and out.startswith(b"raw block") and b"6 bytes" in out
    rc, _, err = run("cat", f"{root}/missing.txt")
    assert rc != 0 and "'missing.txt'" in err and "Traceback" not in err
    rc, _, err = run("cat", f"{root}/a.txt/deeper")
    assert rc == 2 and "expected a directory" in err
