"""The Structure links the Environment of the Pulumi program's own dependencies (issue 9, item 7):
resolved from the program's hashed requirements.lock, memoized per home, carried with the BOM,
and the virtualenv a redeploy runs the program in is built from it out of the CAS."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from program_locks import SIX_16, SIX_17, write_small_lock

from cats_runtime.cas import MemoryBlockStore, _unixfs
from cats_runtime.cas._car import export_car, import_car
from cats_runtime.errors import CatsError, InvalidInputError, ProvisionError, RecordError
from cats_runtime.operations import (
    Node,
    build_function,
    build_structure,
    local_structure,
    run,
    store_structure,
)
from cats_runtime.operations._redeploy import materialize_program, redeploy, use_program_environment
from cats_runtime.operations._structure import describe_structure, home_environments
from cats_runtime.records import EnvironmentRecord, StructureRecord, StructureRecordV1

MakeFunction = Callable[..., str]
CATS = str(Path(sys.executable).with_name("cats"))
WORKTREE = str(Path(__file__).resolve().parents[2])
STACK = "config:\n  cats:cloud: aws\n  cats:region: eu-west-1\n  cats:token:\n    secure: v1:abc:def==\n"


def _program(root: Path, lock: str | None = SIX_17) -> Path:
    prog = root / "prog"
    (prog / "components").mkdir(parents=True)
    (prog / "stacks").mkdir()
    (prog / "Pulumi.yaml").write_text("name: cats\nruntime:\n  name: python\nstackConfigDir: stacks\n")
    (prog / "__main__.py").write_text("import six\nimport pulumi\npulumi.export('six', six.__version__)\n")
    (prog / "components" / "__init__.py").write_text("")
    (prog / "stacks" / "Pulumi.acme.yaml").write_text(STACK)
    (prog / "policies").mkdir()  # redeploy refuses a program without its policy pack
    (prog / "policies" / "PulumiPolicy.yaml").write_text("runtime: python\n")
    if lock is not None:
        write_small_lock(prog, lock)
    return prog


def _dead_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every package index unreachable from this process and its children (loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    for key in [k for k in os.environ if k.startswith(("PIP_", "UV_"))]:
        monkeypatch.delenv(key)
    values = {
        "PIP_NO_INDEX": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": f"{dead}/simple",
        "UV_OFFLINE": "1",
        "UV_INDEX_URL": f"{dead}/simple",
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "http_proxy": dead,
        "https_proxy": dead,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_the_structure_cid_covers_the_lock_through_its_environment(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    prog = _program(tmp_path)
    first = build_structure(prog, "acme", store)
    environment = EnvironmentRecord.decode(store.get(first.environment))  # type: ignore[arg-type]
    assert [(d.name, d.version) for d in environment.distributions] == [("six", "1.17.0")]
    assert all(store.has(d.wheel) for d in environment.distributions)  # the wheel is in the CAS
    write_small_lock(prog, SIX_16)
    second = build_structure(prog, "acme", store)
    assert second.environment != first.environment
    assert second.to_block().cid != first.to_block().cid
    # The Environment alone moves the CID too: same program bytes, another Environment link.
    assert dataclasses.replace(first, environment=second.environment).to_block().cid != first.to_block().cid


def test_local_structure_has_no_environment_and_a_cloud_one_needs_it(tmp_path: Path) -> None:
    assert local_structure().environment is None
    program = _unixfs.add_path(_program(tmp_path), None).cid
    with pytest.raises(RecordError, match="field 'environment' expected null for the local cloud"):
        StructureRecord(cloud="local", stack="local", environment=local_structure().to_block().cid)
    with pytest.raises(RecordError, match="field 'environment' expected the Pulumi program's Environment"):
        StructureRecord(cloud="aws", stack="acme", program=program)


@pytest.mark.parametrize(
    ("lock", "match"),
    [
        (None, r"expected requirements\.lock in the Pulumi program .*found none"),
        ("six==1.17.0\n", r"expected --hash=sha256: pins on every requirement of .*requirements\.lock"),
        ("six>=1\n", r"requirements\.lock:2: expected a pinned requirement 'name==version'"),
        ("", r"expected --hash=sha256: pins .*found no requirement"),
    ],
)
def test_a_missing_unpinned_or_unhashed_lock_is_refused_before_anything_is_stored(
    tmp_path: Path, lock: str | None, match: str
) -> None:
    store = MemoryBlockStore()
    with pytest.raises(InvalidInputError, match=match) as refused:
        build_structure(_program(tmp_path, lock), "acme", store)
    assert "\n" not in str(refused.value)
    assert list(store) == [], "nothing is stored for a refused lock"


def test_cli_refuses_an_unhashed_lock_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    prog = _program(tmp_path, "six==1.17.0\n")
    home = tmp_path / "home"
    env = {**os.environ, "CATS_HOME": str(home), "PYTHONPATH": WORKTREE}
    done = subprocess.run(
        [CATS, "structure", "--dir", str(prog), "--stack", "acme", "--store"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--hash=sha256:" in lines[0] and "Traceback" not in done.stderr
    assert not list((home / "blocks").rglob("*.data")), "a refused lock stores nothing"


def test_the_environment_is_reused_from_the_homes_memo_with_no_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prog = _program(tmp_path)
    with Node.open(tmp_path / "home") as node:
        memo, _ = home_environments(node.home)
        first = describe_structure(prog, "acme", node.store, memo=memo)
        assert first.environment is not None and not first.environment.reused
    _dead_index(monkeypatch)
    # No index now: a second build (stored or not) must come from the memo, or it would fail.
    with Node.open(tmp_path / "home") as node:
        memo, _ = home_environments(node.home)
        again = describe_structure(prog, "acme", node.store, memo=memo)
        assert again.environment is not None and again.environment.reused
        assert again.cid == first.cid
    memo, held = home_environments(tmp_path / "home")
    assert held is not None
    computed = describe_structure(prog, "acme", None, memo=memo, source=held)
    assert computed.environment is not None and computed.environment.reused and computed.cid == first.cid
    # Proof the memo did the work: the same lock in another home needs the index, which is gone.
    with Node.open(tmp_path / "other") as other, pytest.raises(CatsError):
        build_structure(prog, "acme", other.store, memo=other.home / "envs" / ".resolved")


FN = "def main(ctx):\n    (ctx.output / 'o.txt').write_text(ctx.inputs['doc'].read_text()[::-1])\n"


@pytest.mark.usefixtures("ray_session")
def test_a_fresh_node_gets_the_environment_with_the_bom_and_builds_the_programs_venv_offline(
    node: Node, make_function: MakeFunction, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prog = _program(tmp_path)
    structure = build_structure(prog, "acme", node.store)
    structure_cid = store_structure(structure, node.store)
    # A BOM naming acme's Plant, assembled from a local run (as that Plant would sign it).
    _, fn = build_function(make_function(FN), node.store)
    doc = tmp_path / "doc.txt"
    doc.write_text("hello\n")
    local = run(node, function=fn, inputs={"doc": _unixfs.add_path(doc, node.store).cid}, seed=0)
    assert local.bom is not None
    local_bom = node.load(local.bom)
    order = dataclasses.replace(node.load(local_bom.order), structure=structure_cid)
    invoice = dataclasses.replace(node.load(local_bom.invoice), order=order.cid)
    bom = node.sign(
        dataclasses.replace(local_bom, order=order.cid, invoice=invoice.cid, structure=structure_cid)
    )
    node.store.put_many(r.to_block() for r in (order, invoice, bom))
    car = io.BytesIO()
    export_car(node.store, [bom.cid], car)

    _dead_index(monkeypatch)
    with Node.open(tmp_path / "fresh") as fresh:
        assert import_car(fresh.store, io.BytesIO(car.getvalue())) == [bom.cid]
        # The CAR carried the Structure's Environment and its wheels.
        assert structure.environment is not None
        environment = fresh.load(structure.environment)
        assert isinstance(environment, EnvironmentRecord)
        assert all(fresh.store.has(d.wheel) for d in environment.distributions)
        program = materialize_program(fresh, structure, tmp_path / "materialized")
        venv = use_program_environment(fresh, structure, program)
        assert venv is not None and venv.parent == fresh.home / "envs"
        runtime = yaml.safe_load((program / "Pulumi.yaml").read_text())["runtime"]
        assert runtime == {"name": "python", "options": {"virtualenv": str(venv), "toolchain": "pip"}}
        ran = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import six; print(six.__version__)"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert ran.stdout.strip() == "1.17.0", ran.stderr

        if shutil.which("pulumi") is None:
            # redeploy itself builds it before handing the program to the Automation API (whose
            # missing CLI ends this run), with the virtualenv named in the deployed Pulumi.yaml.
            # (The Structure pins the CLI: with none usable redeploy tries to install it, which the
            # dead proxy refuses, or reports it missing.)
            boundary = r"could not install the pinned pulumi CLI|pulumi CLI is not installed"
            with pytest.raises(ProvisionError, match=boundary):
                redeploy(
                    fresh,
                    bom.cid,
                    preview=True,
                    which=lambda _n: "/usr/local/bin/pulumi",
                    env={"AWS_PROFILE": "ops", "PULUMI_CONFIG_PASSPHRASE": "a real passphrase"},
                    secrets={"cats:token": "value"},
                )
            [work] = list((fresh.home / "redeploy").iterdir())
            deployed = yaml.safe_load((work / "program" / "Pulumi.yaml").read_text())
            assert deployed["runtime"]["options"]["virtualenv"] == str(venv)


def test_a_v1_structure_has_no_environment_to_build(tmp_path: Path) -> None:
    prog = _program(tmp_path)
    program = _unixfs.add_path(prog, None).cid
    old = StructureRecordV1(cloud="aws", stack="acme", program=program)
    assert old.environment is None and "environment" not in old.to_obj()
    before = (prog / "Pulumi.yaml").read_text()
    with Node.open(tmp_path / "home") as node:
        assert use_program_environment(node, old, prog) is None
    assert (prog / "Pulumi.yaml").read_text() == before
