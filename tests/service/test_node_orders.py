"""Authenticated Order submission to a real node process: auth, allow-list, limits, runs, records."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from nodeproc import (
    SLOW_FN,
    NodeProcess,
    allow_list_restored,
    make_order_car,
    prepare_home,
    start_node,
    wait_run,
)

from cats_runtime.cas import CID, DAG_PB, Block, Repo, read_car, write_car
from cats_runtime.cas._walk import walk
from cats_runtime.operations import (
    Node,
    NodeIdentity,
    build_function,
    endorse_function,
    local_structure,
    make_order,
    store_structure,
)

CAR = {"Content-Type": "application/vnd.ipld.car"}


class Env:
    node: NodeProcess
    token: str
    client: Path
    order: Any
    car: bytes
    code: Any


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("orders")
    e = Env()
    e.client = base / "client"
    e.order, e.car, e.code = make_order_car(e.client, params={"sleep": 0})
    e.token = prepare_home(base / "node", "acme", allow=[str(e.code)])
    e.node = start_node(base / "node")
    yield e
    e.node.stop()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_valid_order_runs_and_its_bom_is_signed_by_the_node(env: Env) -> None:
    r = httpx.post(f"{env.node.url}/orders", content=env.car, headers={**CAR, **_auth(env.token)})
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/orders/{body['run']}"
    assert body["org"] == "acme"
    assert body["allowed_by"] == "allow-list"
    done = wait_run(env.node.url, body["run"])
    assert done["status"] == "succeeded", done
    bom = httpx.get(f"{env.node.url}/boms/{done['bom']}").json()
    did = httpx.get(f"{env.node.url}/node").json()["did"]
    assert bom["signature"] == "valid"
    assert bom["issuer"] == did == NodeIdentity.load_or_create(env.node.home).did
    assert bom["record"]["order"] == {"/": str(env.order)}
    invoice = httpx.get(f"{env.node.url}/invoices/{done['invoice']}").json()
    assert invoice["record"]["status"] == "succeeded"
    found = httpx.get(
        f"{env.node.url}/catalog", params={"output": done["output"], "order": str(env.order)}
    ).json()
    assert found["boms"] == [done["bom"]]
    assert httpx.get(f"{env.node.url}/catalog", params={"input": done["output"]}).json()["boms"] == []
    recent = httpx.get(f"{env.node.url}/orders", headers=_auth(env.token)).json()["runs"]
    assert done["run"] in [x["run"] for x in recent]
    page = httpx.get(f"{env.node.url}/")
    assert done["bom"] in page.text and page.headers["content-type"].startswith("text/html")
    # the BOM record endpoint refuses other record kinds
    wrong = httpx.get(f"{env.node.url}/boms/{done['invoice']}")
    assert wrong.status_code == 404
    assert "cats/bom" in wrong.json()["message"]


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({}, "Authorization"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "another scheme"),
        ({"Authorization": "Bearer cats_not-a-real-token"}, "unknown token"),
    ],
)
def test_submission_without_a_valid_token_is_401(env: Env, headers: dict[str, str], match: str) -> None:
    r = httpx.post(f"{env.node.url}/orders", content=env.car, headers={**CAR, **headers})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert match in r.json()["message"]


def test_code_not_on_the_allow_list_is_403_and_not_stored(env: Env, tmp_path: Path) -> None:
    other_fn = tmp_path / "fn"
    other_fn.mkdir()
    (other_fn / "evil.py").write_text("def main(ctx):\n    import os\n    os.system('true')\n")
    order, car, code = make_order_car(tmp_path / "c2", spec=f"{other_fn}:evil:main")
    r = httpx.post(f"{env.node.url}/orders", content=car, headers={**CAR, **_auth(env.token)})
    assert r.status_code == 403
    assert str(code) in r.json()["message"]
    assert not Repo.open(env.node.home).blocks.has(order)


def test_code_endorsed_by_a_trusted_key_is_accepted(env: Env, tmp_path: Path) -> None:
    signer_home = tmp_path / "signer"
    Repo.open(signer_home)
    signer = NodeIdentity.load_or_create(signer_home)
    fn = tmp_path / "fn2"
    fn.mkdir()
    (fn / "ok.py").write_text("def main(ctx):\n    (ctx.output / 'x').write_text('x')\n")
    _, car, code = make_order_car(tmp_path / "c3", spec=f"{fn}:ok:main")
    endorsement = str(endorse_function(signer, code))
    untrusted = httpx.post(
        f"{env.node.url}/orders",
        content=car,
        headers={**CAR, **_auth(env.token), "X-Cats-Endorsement": endorsement},
    )
    assert untrusted.status_code == 403  # valid signature, but the signer is not trusted yet
    with allow_list_restored(env.node.home) as allow_file:
        with open(allow_file, "a") as f:
            f.write(f"{signer.did}  # trusted partner\n")
        _endorsed_orders_run(env, car, endorsement, signer.did)
    again = httpx.post(
        f"{env.node.url}/orders",
        content=car,
        headers={**CAR, **_auth(env.token), "X-Cats-Endorsement": endorsement},
    )
    assert again.status_code == 403  # the trust ended with the test: later tests see the old list


def _endorsed_orders_run(env: Env, car: bytes, endorsement: str, did: str) -> None:
    forged = endorsement[:-4] + ("AAAA" if not endorsement.endswith("AAAA") else "BBBB")
    bad = httpx.post(
        f"{env.node.url}/orders",
        content=car,
        headers={**CAR, **_auth(env.token), "X-Cats-Endorsement": forged},
    )
    assert bad.status_code == 403
    ok = httpx.post(
        f"{env.node.url}/orders",
        content=car,
        headers={**CAR, **_auth(env.token), "X-Cats-Endorsement": endorsement},
    )
    assert ok.status_code == 202, ok.text
    assert ok.json()["allowed_by"] == f"endorsed by {did}"
    assert wait_run(env.node.url, ok.json()["run"])["status"] == "succeeded"


@pytest.mark.parametrize(
    ("content", "ctype", "status", "match"),
    [
        (b"not a car", "application/vnd.ipld.car", 400, "truncated header"),
        (b"{", "application/json", 400, "JSON"),
        (b'{"order": 5}', "application/json", 400, "CID string"),
        (b'{"order": "bafkqaaa", "extra": 1}', "application/json", 400, "keys"),
        (b'{"order": "bafkqaaa", "from": "file:///etc/passwd"}', "application/json", 400, "http"),
        (b"x", "text/plain", 415, "Content-Type"),
    ],
)
def test_malformed_submissions(env: Env, content: bytes, ctype: str, status: int, match: str) -> None:
    r = httpx.post(
        f"{env.node.url}/orders", content=content, headers={"Content-Type": ctype, **_auth(env.token)}
    )
    assert r.status_code == status, r.text
    assert match in r.json()["message"]


def test_a_car_missing_the_inputs_is_refused(env: Env, tmp_path: Path) -> None:
    blocks = list(read_car(io.BytesIO(env.car)))
    order, _, _ = make_order_car(tmp_path / "c4", data=b"another input")
    _, car, _ = make_order_car(tmp_path / "c4", data=b"another input")
    kept = [b for b in read_car(io.BytesIO(car)) if b.cid.codec != 0x55]  # drop raw leaves: the input
    out = io.BytesIO()
    write_car(out, [order], kept)
    before = _block_count(env.node.home)
    r = httpx.post(f"{env.node.url}/orders", content=out.getvalue(), headers={**CAR, **_auth(env.token)})
    assert r.status_code == 400
    assert "missing" in r.json()["message"] or "incomplete" in r.json()["message"]
    assert _block_count(env.node.home) == before  # not even the Order, which the CAR did hold
    assert blocks  # the original CAR is untouched


def test_unknown_run_is_404_and_bad_id_400(env: Env) -> None:
    assert httpx.get(f"{env.node.url}/orders/{'0' * 32}").status_code == 404
    assert httpx.get(f"{env.node.url}/orders/..%2F..%2Fetc").status_code in (400, 404)
    assert httpx.get(f"{env.node.url}/orders/xyz").status_code == 400


def test_order_by_cid_already_in_the_store(env: Env) -> None:
    r = httpx.post(f"{env.node.url}/orders", json={"order": str(env.order)}, headers=_auth(env.token))
    assert r.status_code == 202, r.text
    done = wait_run(env.node.url, r.json()["run"])
    assert done["status"] == "succeeded"


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A node with tiny limits: 1 MiB CARs, 1 KiB JSON, one run and no queue."""
    base = tmp_path_factory.mktemp("tight")
    e = Env()
    e.client = base / "client"
    e.order, e.car, e.code = make_order_car(e.client, params={"sleep": 5})
    e.token = prepare_home(base / "node", "acme", allow=[str(e.code)])
    e.node = start_node(
        base / "node", "--max-car-mib", "1", "--max-json-kib", "1", "--max-runs", "1", "--max-queued", "0"
    )
    yield e
    e.node.stop()


def test_oversized_bodies_are_413_even_when_streamed(tight: Env) -> None:
    big = b"\0" * (2 << 20)
    r = httpx.post(f"{tight.node.url}/orders", content=big, headers={**CAR, **_auth(tight.token)})
    assert r.status_code == 413
    assert "Content-Length" in r.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(64):
            yield b"\0" * 65536

    r = httpx.post(f"{tight.node.url}/orders", content=chunks(), headers={**CAR, **_auth(tight.token)})
    assert r.status_code == 413
    assert "at most 1048576" in r.json()["message"]
    r = httpx.post(
        f"{tight.node.url}/orders",
        content=b'{"order": "' + b"x" * 2000 + b'"}',
        headers={"Content-Type": "application/json", **_auth(tight.token)},
    )
    assert r.status_code == 413
    assert not list((tight.node.home / "node" / "incoming").iterdir())  # spool files removed


def test_a_full_run_queue_answers_429(tight: Env, tmp_path: Path) -> None:
    first = httpx.post(f"{tight.node.url}/orders", content=tight.car, headers={**CAR, **_auth(tight.token)})
    assert first.status_code == 202
    _, car2, _ = make_order_car(tmp_path / "c5", params={"sleep": 5}, seed=7)
    second = httpx.post(f"{tight.node.url}/orders", content=car2, headers={**CAR, **_auth(tight.token)})
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) > 0
    status = httpx.get(f"{tight.node.url}/orders/{first.json()['run']}").json()["status"]
    assert status in ("queued", "running")
    # a full node refuses before reading a body, so even the Order in flight gets 429
    same = httpx.post(f"{tight.node.url}/orders", content=tight.car, headers={**CAR, **_auth(tight.token)})
    assert same.status_code == 429


def test_an_identical_order_in_flight_joins_its_run(env: Env, tmp_path: Path) -> None:
    _, car, _ = make_order_car(tmp_path / "c6", params={"sleep": 3}, seed=11)
    first = httpx.post(f"{env.node.url}/orders", content=car, headers={**CAR, **_auth(env.token)})
    same = httpx.post(f"{env.node.url}/orders", content=car, headers={**CAR, **_auth(env.token)})
    assert (first.status_code, same.status_code) == (202, 202)
    assert first.json()["new"] is True
    assert (same.json()["run"], same.json()["new"]) == (first.json()["run"], False)
    assert wait_run(env.node.url, first.json()["run"])["status"] == "succeeded"


# -- clean intake: a refused CAR stores nothing; an accepted one keeps only the Order's DAG -------
def _block_count(home: Path) -> int:
    return sum(1 for _ in Repo.open(home).blocks)


def _car_over(client: Path, data: Block, extra: Sequence[Block] = (), seed: int = 41) -> tuple[CID, bytes]:
    """A CAR of an Order of the test Function on the input block ``data``: the Order, the
    Function and Structure DAGs, ``data`` itself (never walked: it may be malformed), ``extra``."""
    with Node.open(client) as node:
        _, function = build_function(f"{SLOW_FN}:slow:main", node.store)
        structure = store_structure(local_structure(), node.store)
        node.store.put(data)
        _, order = make_order(node, function, {"data": data.cid}, {"sleep": 0}, seed, structure)
        blocks = [Block.checked(order, node.store.get(order))]
        blocks += [*walk(node.store, function), *walk(node.store, structure), data, *extra]
    out = io.BytesIO()
    write_car(out, [order], blocks)
    return order, out.getvalue()


def test_a_car_refused_after_reading_it_stores_none_of_its_blocks(env: Env, tmp_path: Path) -> None:
    # An input DAG whose root is not dag-pb at all (it hashes right, it does not decode).
    garbage = Block.encode(b"\xff\x00 not a PBNode", DAG_PB)
    order, car = _car_over(tmp_path / "c7", garbage)
    before = _block_count(env.node.home)
    r = httpx.post(f"{env.node.url}/orders", content=car, headers={**CAR, **_auth(env.token)}, timeout=60)
    assert r.status_code == 400, r.text
    assert _block_count(env.node.home) == before
    for cid in (order, garbage.cid):
        assert httpx.get(f"{env.node.url}/ipfs/{cid}?format=raw").status_code == 404


def test_an_accepted_car_keeps_only_the_orders_dag_pinned_under_its_run(env: Env, tmp_path: Path) -> None:
    data = Block.encode(b"the real input\n")
    unrelated = [Block.encode(b"carried along, linked from nothing\n"), Block.encode(b"\xa0", 0x71)]
    order, car = _car_over(tmp_path / "c8", data, unrelated)
    r = httpx.post(f"{env.node.url}/orders", content=car, headers={**CAR, **_auth(env.token)}, timeout=60)
    assert r.status_code == 202, r.text
    run = r.json()["run"]
    for block in unrelated:
        assert httpx.get(f"{env.node.url}/ipfs/{block.cid}?format=raw").status_code == 404
        assert not Repo.open(env.node.home).blocks.has(block.cid)
    assert httpx.get(f"{env.node.url}/ipfs/{data.cid}?format=raw").content == data.data
    pins = {p.cid: p.name for p in Repo.open(env.node.home).pins.ls()}
    assert pins[order] == f"run:{run}"
    assert wait_run(env.node.url, run)["status"] == "succeeded"
