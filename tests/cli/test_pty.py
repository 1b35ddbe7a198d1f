"""Every long command as a person runs it (stderr on a pseudo-terminal) and as a script does (piped):
exit 0 on success; on failure exactly one line on stderr and the documented exit code, never a
traceback. Real ``cats`` processes, a real node for ``fetch``; with ``--json`` the output is checked
against its schema in docs/json.

Ray runs are the expensive part (about 10 s each here), so one home is shared by the whole module
and each Ray-backed command runs once per mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from nodeproc import NodeProcess, free_port, start_node
from schemas import validate
from terminal import MODES, Mode, Result, assert_fails, assert_ok
from terminal import cats as run_cats

MISSING = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # a raw block no home here holds
MISSING_RECORD = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # a record none holds


@dataclass
class Workspace:
    """The module's shared home, its code and data, and what the runs produced."""

    root: Path
    home: Path
    code: Path
    doc: Path
    texts: Path
    node: NodeProcess | None = None
    boms: dict[str, str] = field(default_factory=dict)  # "batch" / "map" -> BOM CID
    first: dict[Mode, Result] = field(default_factory=dict)  # the computing run of each mode

    def cats(self, mode: Mode, *args: str, home: Path | None = None) -> Result:
        return run_cats(mode, *args, home=home or self.home)

    def json(self, command: str, *args: str, home: Path | None = None) -> Any:
        """Run piped with --json, check exit 0, validate against docs/json/<command>.schema.json."""
        result = self.cats("pipe", *args, "--json", home=home)
        assert_ok(result)
        data = json.loads(result.out)
        validate(command, data)
        return data


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The shared home with code and data, no runs yet (the failure cases need no more)."""
    root = tmp_path_factory.mktemp("pty")
    code = root / "code"
    code.mkdir()
    (code / "fn.py").write_text(
        "def upper(ctx):\n"
        "    (ctx.output / 'out.txt').write_text(ctx.inputs['doc'].read_text().upper())\n\n"
        "def each(ctx):\n"
        "    (ctx.output / ctx.datum.name).write_text(ctx.datum.path.read_text()[::-1])\n"
    )
    doc = root / "doc.txt"
    doc.write_text("hello terminal\n")
    texts = root / "texts"
    texts.mkdir()
    for i in range(3):
        (texts / f"t{i}.txt").write_text(f"text number {i}\n" * 50)
    ws = Workspace(root, root / "home", code, doc, texts)
    try:
        yield ws
    finally:
        if ws.node is not None:
            ws.node.stop()


@pytest.fixture(scope="module")
def ws(base: Workspace) -> Workspace:
    """The shared home after its two computing runs: batch under a pty, map piped with --json."""
    if not base.boms:
        base.first["pty"] = base.cats(
            "pty", "run", "--function", f"{base.code}:fn:upper", "--input", f"doc={base.doc}"
        )
        assert_ok(base.first["pty"])
        base.boms["batch"] = _field(base.first["pty"].out, "bom")
        data = base.json(
            "run",
            "run",
            "--function",
            f"{base.code}:fn:each",
            "--mode",
            "map",
            "--input",
            f"texts={base.texts}",
        )
        assert data["status"] == "succeeded" and data["computed"] == 3
        base.boms["map"] = data["bom"]
    return base


def _field(text: str, name: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return value.strip().split()[0]
    raise AssertionError(f"no {name!r} line in {text!r}")


# -- success, in both modes ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_run_batch_and_map(ws: Workspace, mode: Mode) -> None:
    # Each mode ran one Order for real (the fixture) and repeats the other one: that answer is
    # the stored BOM, printed the same way in a terminal and in a pipe.
    if mode == "pty":
        again = ws.cats(
            mode, "run", "--function", f"{ws.code}:fn:each", "--mode", "map", "--input", f"texts={ws.texts}"
        )
        assert_ok(again)
        assert _field(again.out, "bom") == ws.boms["map"] and "already ran" in again.out
        assert ws.first["pty"].shown[-1].startswith("running done")  # the progress line, finished
    else:
        again = ws.cats(mode, "run", "--function", f"{ws.code}:fn:upper", "--input", f"doc={ws.doc}")
        assert_ok(again)
        assert _field(again.out, "bom") == ws.boms["batch"]


@pytest.mark.parametrize("mode", MODES)
def test_add_file_and_directory_then_get_cat_and_car(ws: Workspace, mode: Mode) -> None:
    out = ws.root / f"out-{mode}"
    out.mkdir()
    added = ws.cats(mode, "add", str(ws.doc))
    assert_ok(added)
    file_cid = added.out.strip()
    directory = ws.cats(mode, "add", str(ws.texts))
    assert_ok(directory)
    dir_cid = directory.out.strip()
    if mode == "pty":
        assert any(line.startswith("adding texts done") for line in directory.shown), directory.describe()
    got = ws.cats(mode, "get", dir_cid, "-o", str(out / "texts"))
    assert_ok(got)
    assert sorted(p.name for p in (out / "texts").iterdir()) == ["t0.txt", "t1.txt", "t2.txt"]
    shown = ws.cats(mode, "cat", file_cid)
    assert_ok(shown)
    assert shown.out == "hello terminal\n"
    exported = ws.cats(mode, "car", "export", dir_cid, "-o", str(out / "texts.car"))
    assert_ok(exported)
    imported = ws.cats(mode, "car", "import", str(out / "texts.car"), home=ws.root / f"car-home-{mode}")
    assert_ok(imported)
    assert imported.out.strip() == dir_cid
    if mode == "pipe":  # the same commands' --json shapes
        assert validate_all(ws, file_cid, dir_cid, out)


def validate_all(ws: Workspace, file_cid: str, dir_cid: str, out: Path) -> bool:
    assert ws.json("add", "add", str(ws.doc))["cid"] == file_cid
    assert ws.json("get", "get", file_cid, "-o", str(out / "doc-again.txt"))["cid"] == file_cid
    assert ws.json("car-export", "car", "export", dir_cid, "-o", str(out / "again.car"))["blocks"] >= 4
    assert ws.json("car-import", "car", "import", str(out / "again.car"))["roots"] == [dir_cid]
    assert ws.json("show", "show", dir_cid)["cid"] == dir_cid
    assert ws.json("show", "show", ws.boms["batch"])["record_type"] == "cats/bom@1"
    assert any(p["cid"] == dir_cid for p in ws.json("pin-ls", "pin", "ls"))
    assert ws.json("repo-verify", "repo", "verify")["corrupt"] == []
    assert ws.json("node-id", "node", "id")["did"].startswith("did:key:")
    assert ws.json("catalog-rebuild", "catalog", "rebuild")["records"] >= 2
    assert {r["bom"] for r in ws.json("ls", "ls")} >= set(ws.boms.values())
    return True


@pytest.mark.parametrize("mode", MODES)
def test_verify_reexecutes(ws: Workspace, mode: Mode) -> None:
    bom = ws.boms["batch" if mode == "pty" else "map"]
    if mode == "pty":
        result = ws.cats(mode, "verify", bom)
        assert_ok(result)
        assert result.out.startswith("match:")
    else:
        assert ws.json("verify", "verify", bom)["verdict"] == "match"


@pytest.mark.parametrize("mode", MODES)
def test_verify_structural(ws: Workspace, mode: Mode) -> None:
    result = ws.cats(mode, "verify", "--structural", ws.boms["map"])
    assert_ok(result)
    assert result.out.startswith("intact:")
    if mode == "pipe":
        assert ws.json("verify", "verify", "--structural", ws.boms["batch"])["verdict"] == "intact"


@pytest.mark.parametrize("mode", MODES)
def test_redeploy_of_a_local_bom(ws: Workspace, mode: Mode) -> None:
    if mode == "pty":
        result = ws.cats(mode, "redeploy", ws.boms["batch"])
        assert_ok(result)
        assert "match: output" in result.out
    else:
        data = ws.json("redeploy", "redeploy", ws.boms["batch"])
        assert data["cloud"] == "local" and data["verdict"] == "match"


@pytest.mark.parametrize("mode", MODES)
def test_lineage(ws: Workspace, mode: Mode) -> None:
    result = ws.cats(mode, "lineage", ws.boms["batch"])
    assert_ok(result)
    assert ws.boms["batch"] in result.out


def _node(ws: Workspace) -> NodeProcess:
    if ws.node is None:
        ws.node = start_node(ws.home)
    return ws.node


@pytest.mark.parametrize("mode", MODES)
def test_fetch_from_a_peer_node(ws: Workspace, mode: Mode) -> None:
    node = _node(ws)
    peer_home = ws.root / f"peer-{mode}"
    result = ws.cats(mode, "fetch", ws.boms["map"], "--from", node.url, home=peer_home)
    assert_ok(result)
    assert result.out.startswith(ws.boms["map"])
    if mode == "pipe":
        again = ws.json("fetch", "fetch", ws.boms["batch"], "--from", node.url, home=peer_home)
        assert again["root"] == ws.boms["batch"] and again["failures"] == []


# -- failures, in both modes: one line, the documented exit code --------------------------------

FAILURES: list[tuple[list[str], int, str]] = [
    (["add", "/nonexistent/cats-pty-path"], 2, "does not exist"),
    (["get", MISSING, "-o", "{root}/never"], 3, "not found"),
    (["cat", "bafyreinotacid"], 2, "expected a CID, found 'bafyreinotacid'"),
    (["show", "bafyreinotacid"], 2, "expected a CID, found 'bafyreinotacid'"),
    (["car", "export", MISSING, "-o", "{root}/never.car"], 3, "not found"),
    (["car", "import", "{root}/doc.txt"], 2, ""),
    (["run", "--function", "{root}/code:fn:upper", "--input", f"doc={MISSING}"], 3, "not in the store"),
    (["run", "--function", "{root}/code:fn:upper"], 2, "--input"),
    (["verify", MISSING_RECORD], 3, "not found"),
    (["verify", "--structural", MISSING_RECORD], 3, "not found"),
    (["verify", "bafyreinotacid"], 2, "expected a CID, found 'bafyreinotacid'"),
    (["redeploy", MISSING_RECORD], 3, "not found"),
    (["lineage", "not-a-cid"], 2, "expected a CID, found 'not-a-cid'"),
    (["fetch", MISSING, "--from", "ftp://127.0.0.1:1"], 2, "http://"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("args", "code", "match"), FAILURES, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_failure_is_one_line_and_its_exit_code(
    base: Workspace, mode: Mode, args: list[str], code: int, match: str
) -> None:
    ws = base
    argv = [a.replace("{root}", str(ws.root)) for a in args]
    assert_fails(ws.cats(mode, *argv), code, match)
    # With --json the same error is also a JSON object on stdout.
    if mode == "pipe" and argv[0] not in ("cat", "lineage"):
        result = ws.cats(mode, *argv, "--json")
        assert_fails(result, code, match)
        error = json.loads(result.out)
        validate("error", error)
        assert error["exit_code"] == code and match in error["message"]


@pytest.mark.parametrize("mode", MODES)
def test_fetch_from_a_dead_peer_is_one_line(base: Workspace, mode: Mode) -> None:
    ws = base
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # Not the library's log of each peer it skipped: one line, which names the failures.
    line = assert_fails(ws.cats(mode, "fetch", MISSING, "--from", url, home=ws.root / f"dead-{mode}"), 3)
    assert f"not found locally nor at GatewayBlockSource('{url}')" in line and "Connection refused" in line


def test_verify_json_of_an_unknown_cid_prints_a_json_error(base: Workspace) -> None:
    ws = base
    result = ws.cats("pipe", "verify", "--json", MISSING_RECORD)
    assert result.code == 3
    error = json.loads(result.out)
    validate("error", error)
    assert error["error"] == "BlockNotFoundError" and MISSING_RECORD in error["message"]
