"""The allow-list names Functions (code + entrypoint + mode + ...), not code: a real node refuses
another entrypoint in allowed code unless its operator explicitly allowed the code for any entrypoint."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from nodeproc import NodeProcess, allow_list_restored, cats, prepare_home, start_node, wait_run

from cats_runtime.cas import CID, add_bytes, write_car
from cats_runtime.operations import (
    Node,
    build_function,
    local_structure,
    make_order,
    order_blocks,
    store_structure,
)

CAR = {"Content-Type": "application/vnd.ipld.car"}
_CODE = """\
def main(ctx):
    (ctx.output / "who.txt").write_text("main\\n")


def other(ctx):
    (ctx.output / "who.txt").write_text("other: not what the node agreed to run\\n")
"""


@dataclass
class Env:
    node: NodeProcess
    token: str
    client: Path
    code_dir: Path
    code: CID


def _order_car(client: Path, spec: str) -> tuple[CID, bytes]:
    with Node.open(client) as node:
        _, function = build_function(spec, node.store)
        structure = store_structure(local_structure(), node.store)
        data = add_bytes(b"input\n", node.store)
        _, order = make_order(node, function, {"data": data}, {}, 0, structure)
        out = io.BytesIO()
        write_car(out, [order], order_blocks(node.store, order))
    return function, out.getvalue()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("allowfn")
    code_dir = base / "fn"
    code_dir.mkdir()
    (code_dir / "fn.py").write_text(_CODE)
    record, main_function = build_function(f"{code_dir}:fn:main", None)
    home = base / "node"
    token = prepare_home(home, "acme")
    # The operator allows the Function as a person does: by pointing at the code and the entrypoint.
    listed = cats(home, "node", "allow", "--function", f"{code_dir}:fn:main").stdout.split()
    assert listed == [str(main_function)]
    node = start_node(home)
    try:
        yield Env(node, token, base / "client", code_dir, record.code)
    finally:
        node.stop()


def _post(env: Env, car: bytes) -> httpx.Response:
    headers = {**CAR, "Authorization": f"Bearer {env.token}"}
    return httpx.post(f"{env.node.url}/orders", content=car, headers=headers, timeout=60)


def test_another_entrypoint_in_allowed_code_is_refused_and_the_allowed_function_runs(env: Env) -> None:
    other, other_car = _order_car(env.client, f"{env.code_dir}:fn:other")
    refused = _post(env, other_car)
    assert refused.status_code == 403, refused.text
    assert str(other) in refused.json()["message"]
    token_file = env.client / "token"
    token_file.write_text(env.token)
    cli = cats(
        env.client,
        "node",
        "submit",
        "--to",
        env.node.url,
        "--token-file",
        str(token_file),
        "--function",
        f"{env.code_dir}:fn:other",
        "--input",
        f"data={env.code_dir / 'fn.py'}",
        check=False,
    )
    assert cli.returncode == 5, (cli.stdout, cli.stderr)
    assert "Traceback" not in cli.stderr and len(cli.stderr.strip().splitlines()) == 1

    _, main_car = _order_car(env.client, f"{env.code_dir}:fn:main")
    accepted = _post(env, main_car)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["allowed_by"] == "allow-list"
    assert wait_run(env.node.url, accepted.json()["run"])["status"] == "succeeded"


def test_code_for_any_entrypoint_is_an_explicit_option(env: Env) -> None:
    _, car = _order_car(env.client, f"{env.code_dir}:fn:other")
    bare = cats(env.node.home, "node", "allow", str(env.code), check=False)
    assert bare.returncode == 2 and "--code-any-entrypoint" in bare.stderr
    assert _post(env, car).status_code == 403  # the refused bare entry changed nothing
    with allow_list_restored(env.node.home):  # the wider rule ends with this test
        cats(env.node.home, "node", "allow", "--code-any-entrypoint", str(env.code))
        wide = _post(env, car)
        assert wide.status_code == 202, wide.text
        assert wide.json()["allowed_by"] == f"allow-list: code:{env.code} (any entrypoint)"
        assert wait_run(env.node.url, wide.json()["run"])["status"] == "succeeded"
    assert _post(env, car).status_code == 403  # and is gone again for the tests after this one
