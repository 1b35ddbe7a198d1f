"""Chains of Orders across organizations: org A submits to node B an Order built on A's own BOM.

Two real node processes on loopback (A serves its home's gateway, B runs Orders), the `cats`
CLI as separate processes, and a third fresh home that checks B's export.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from nodeproc import SLOW_FN, NodeProcess, cats, start_node, wait_run

from cats_runtime.cas import CID, Repo, read_car, write_car
from cats_runtime.operations import Node, NodeIdentity, build_function, make_order, order_blocks
from cats_runtime.records import BOMRecord

SPEC = f"{SLOW_FN}:slow:main"
CAR = {"Content-Type": "application/vnd.ipld.car"}


@dataclass
class Chain:
    home_a: Path
    node_a: NodeProcess
    node_b: NodeProcess
    token: Path
    bom_a: CID
    output_a: CID
    did_a: str
    did_b: str


def _json(home: Path, *args: str) -> dict[str, object]:
    return json.loads(cats(home, *args, "--json").stdout)  # type: ignore[no-any-return]


def _block_count(home: Path) -> int:
    return sum(1 for _ in Repo.open(home).blocks)


def _gateway_option(home: Path) -> list[str]:
    # Nodes that only fetch from registered gateways take the submitter's gateway with its token.
    helptext = cats(home, "node", "token", "add", "--help").stdout
    return ["--gateway"] if "--gateway" in helptext else []


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    base = tmp_path_factory.mktemp("chain")
    home_a, home_b = base / "a", base / "b"
    data = base / "readings.txt"
    data.write_text("12.5\n13.0\n")
    try:
        with pytest.MonkeyPatch.context() as mp:
            # A's warm Ray may go soon after A's run; the nodes keep the default (B's runs
            # follow each other, and the node stops its Ray when it stops).
            mp.setenv("CATS_RAY_IDLE_TIMEOUT", "5")
            ran = _json(home_a, "run", "--function", SPEC, "--input", f"data={data}")
    finally:
        cats(home_a, "ray", "stop", check=False)
    node_a = start_node(home_a)
    try:
        Repo.open(home_b)
        assert cats(home_b, "node", "allow", "--function", SPEC).stdout
        gateway = _gateway_option(home_b)
        register = [*gateway, node_a.url] if gateway else []
        token = cats(home_b, "node", "token", "add", "org-a", *register).stdout
        token_file = base / "org-a.token"
        token_file.write_text(token.strip().splitlines()[-1] + "\n")
        node_b = start_node(home_b)
        try:
            yield Chain(
                home_a,
                node_a,
                node_b,
                token_file,
                CID.decode(str(ran["bom"])),
                CID.decode(str(ran["output"])),
                NodeIdentity.load_or_create(home_a).did,
                NodeIdentity.load_or_create(home_b).did,
            )
        finally:
            node_b.stop()
    finally:
        node_a.stop()


def _bom(url: str, cid: object) -> dict[str, object]:
    r = httpx.get(f"{url}/boms/{cid}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_json_from_the_submitters_gateway_fetches_the_parent_dags(chain: Chain) -> None:
    with Node.open(chain.home_a) as node:
        order, order_cid = make_order(
            node,
            node.load(chain.bom_a).function,
            {"data": chain.output_a},
            {},
            3,
            node.load(chain.bom_a).structure,
        )
    assert list(order.parents) == [chain.bom_a]
    token = chain.token.read_text().strip()
    r = httpx.post(
        f"{chain.node_b.url}/orders",
        json={"order": str(order_cid), "from": chain.node_a.url},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    done = wait_run(chain.node_b.url, r.json()["run"], timeout=300)
    assert done["status"] == "succeeded", done
    record = _bom(chain.node_b.url, done["bom"])
    assert record["record"]["parents"] == [{"/": str(chain.bom_a)}]  # type: ignore[index]
    # A's whole run came with it (this test runs first: B held nothing of A's before).
    with Node.open(chain.home_a) as node:
        bom_a = node.load(chain.bom_a)
        assert isinstance(bom_a, BOMRecord)
        invoice = bom_a.invoice
    assert httpx.get(f"{chain.node_b.url}/ipfs/{invoice}?format=raw").status_code == 200
    lineage = cats(chain.node_b.home, "lineage", str(done["bom"])).stdout
    assert f"issuer {chain.did_a}" in lineage and f"issuer {chain.did_b}" in lineage


def test_cli_submit_carries_the_parent_dag_and_lineage_spans_both_orgs(chain: Chain, tmp_path: Path) -> None:
    done = _json(
        chain.home_a,
        "node",
        "submit",
        "--to",
        chain.node_b.url,
        "--token-file",
        str(chain.token),
        "--function",
        SPEC,
        "--input",
        f"data={chain.output_a}",
        "--seed",
        "1",  # the test Function writes its seed: B's output differs from A's
    )
    assert done["status"] == "succeeded", done
    bom_b = done["bom"]
    record = _bom(chain.node_b.url, bom_b)
    assert record["record"]["parents"] == [{"/": str(chain.bom_a)}]  # type: ignore[index]
    assert (record["issuer"], record["signature"]) == (chain.did_b, "valid")
    # Node B indexed A's records: its catalog knows who produced B's input.
    found = httpx.get(f"{chain.node_b.url}/catalog", params={"output": str(chain.output_a)}).json()
    assert found["boms"] == [str(chain.bom_a)]

    lineage = cats(chain.node_b.home, "lineage", str(bom_b)).stdout
    assert str(chain.bom_a) in lineage and str(bom_b) in lineage
    assert f"issuer {chain.did_a}" in lineage and f"issuer {chain.did_b}" in lineage

    # A third organization, with nothing but B's export, checks B's BOM down to A's run.
    car = tmp_path / "b.car"
    cats(chain.node_b.home, "car", "export", str(bom_b), "-o", str(car))
    home_c = tmp_path / "c"
    cats(home_c, "car", "import", str(car))
    structural = _json(home_c, "verify", "--structural", str(bom_b))
    # B's and A's BOM, Order and Invoice, and the Function and Structure both runs share.
    assert structural["records"] == 8
    try:
        verdict = _json(home_c, "verify", str(bom_b))
    finally:
        cats(home_c, "ray", "stop", check=False)
    assert verdict["verdict"] == "match", verdict


def _order_car(chain: Chain, seed: int, *, forge: bool = False) -> tuple[CID, bytes]:
    """A CAR of an Order on A's output with seed ``seed``; ``forge`` names as parent a copy of
    A's BOM whose signature does not verify."""
    with Node.open(chain.home_a) as node:
        bom_a = node.load(chain.bom_a)
        assert isinstance(bom_a, BOMRecord)
        order, order_cid = make_order(
            node, bom_a.function, {"data": chain.output_a}, {}, seed, bom_a.structure
        )
        blocks = list(order_blocks(node.store, order_cid))
    if forge:
        forged = replace(bom_a, signature=bytes(64)).to_block()
        order_block = replace(order, parents=[forged.cid]).to_block()
        blocks = [order_block, forged, *[b for b in blocks if b.cid != order_cid]]
        order_cid = order_block.cid
    out = io.BytesIO()
    write_car(out, [order_cid], blocks)
    return order_cid, out.getvalue()


def test_a_forged_parent_is_refused_and_nothing_is_stored(chain: Chain) -> None:
    token = chain.token.read_text().strip()
    order_cid, car = _order_car(chain, 5, forge=True)
    before = _block_count(chain.node_b.home)
    r = httpx.post(
        f"{chain.node_b.url}/orders",
        content=car,
        headers={**CAR, "Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    assert "signature" in r.json()["message"]
    assert _block_count(chain.node_b.home) == before
    assert httpx.get(f"{chain.node_b.url}/ipfs/{order_cid}?format=raw").status_code == 404


def test_a_refused_json_submission_stores_nothing(chain: Chain, tmp_path: Path) -> None:
    other = tmp_path / "fn"
    other.mkdir()
    (other / "other.py").write_text("def main(ctx):\n    (ctx.output / 'x').write_text('x')\n")
    with Node.open(chain.home_a) as node:
        _, function = build_function(f"{other}:other:main", node.store)
        bom_a = node.load(chain.bom_a)
        _, order_cid = make_order(node, function, {"data": chain.output_a}, {}, 0, bom_a.structure)
    before = _block_count(chain.node_b.home)
    r = httpx.post(
        f"{chain.node_b.url}/orders",
        json={"order": str(order_cid), "from": chain.node_a.url},
        headers={"Authorization": f"Bearer {chain.token.read_text().strip()}"},
        timeout=30,
    )
    # Accepted as `fetching` at once (the node contacts the gateway only on its fetch pool), then
    # refused there once the Order and Function are read (in memory): the run fails, nothing stays.
    assert r.status_code == 202, r.text
    done = wait_run(chain.node_b.url, r.json()["run"])
    assert done["status"] == "failed" and str(done["error"]).startswith("AuthError"), done
    assert _block_count(chain.node_b.home) == before  # neither the Order nor its Function stayed
    assert not Repo.open(chain.node_b.home).blocks.has(order_cid)


def test_a_parent_dag_missing_from_the_car_is_refused(chain: Chain) -> None:
    # A parent B has never seen: A's BOM re-issued (validly signed by A) over an Order of seed 99.
    with Node.open(chain.home_a) as node:
        bom_a = node.load(chain.bom_a)
        assert isinstance(bom_a, BOMRecord)
        parent_order = replace(node.load(bom_a.order), seed=99).to_block()
        parent = node.sign(replace(bom_a, order=parent_order.cid, issuer=None, signature=None)).to_block()
        order_cid, car = _order_car(chain, 6)
        order = replace(node.load(order_cid), parents=[parent.cid]).to_block()
    kept = [order, parent, *(b for b in read_car(io.BytesIO(car)) if b.cid != order_cid)]
    out = io.BytesIO()
    write_car(out, [order.cid], kept)  # the parent's Order is not in it
    before = _block_count(chain.node_b.home)
    r = httpx.post(
        f"{chain.node_b.url}/orders",
        content=out.getvalue(),
        headers={**CAR, "Authorization": f"Bearer {chain.token.read_text().strip()}"},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    assert str(parent_order.cid) in r.json()["message"]
    assert _block_count(chain.node_b.home) == before  # not even the blocks the CAR did carry
    assert os.listdir(chain.node_b.home / "node" / "incoming") == []
    # The same Order with its parent's DAG whole is accepted.
    complete = io.BytesIO()
    write_car(complete, [order.cid], [*kept, parent_order])
    ok = httpx.post(
        f"{chain.node_b.url}/orders",
        content=complete.getvalue(),
        headers={**CAR, "Authorization": f"Bearer {chain.token.read_text().strip()}"},
        timeout=60,
    )
    assert ok.status_code == 202, ok.text
    assert wait_run(chain.node_b.url, ok.json()["run"], timeout=300)["status"] == "succeeded"
