"""Regression tests of the security review of the node service (one real node process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nodeproc import NodeProcess, make_order_car, prepare_home, start_node

from cats_runtime.cas import CID, DAG_CBOR, MemoryBlockStore, add_bytes, dagcbor_encode
from cats_runtime.service import RunInfo
from cats_runtime.service._runs import RunStore

JSON = {"Content-Type": "application/json"}
FAILED_RUN = "f" * 32


class Env:
    node: NodeProcess
    token: str
    order: CID


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("review")
    e = Env()
    order, _car, code = make_order_car(base / "client", params={"sleep": 0})
    e.order = order  # type: ignore[assignment]
    home = base / "node"
    e.token = prepare_home(home, "acme", allow=[str(code)])
    # A settled run whose error names a file in the home, as a library message can.
    store = RunStore(home / "node" / "runs.sqlite")
    store.insert(
        RunInfo(
            FAILED_RUN,
            order,  # type: ignore[arg-type]
            "acme",
            "failed",
            "allow-list",
            1,
            error=f"BlockNotFoundError: block {order} not found in {home}/blocks",
        )
    )
    store.close()
    e.node = start_node(home)
    yield e
    e.node.stop()


def _missing_cids() -> list[CID]:
    raw = add_bytes(b"never stored on the node", MemoryBlockStore())
    return [raw, CID.compute(dagcbor_encode({"never": "stored"}), DAG_CBOR)]


def test_errors_never_reveal_the_node_home(env: Env) -> None:
    home = str(env.node.home)
    raw, record = _missing_cids()
    for path in (f"/ipfs/{raw}?format=raw", f"/ipfs/{record}?format=car", f"/boms/{record}"):
        r = httpx.get(f"{env.node.url}{path}")
        assert r.status_code == 404, r.text
        assert "not found" in r.json()["message"]
        assert home not in r.text and str(Path(home).resolve()) not in r.text
    run = httpx.get(f"{env.node.url}/orders/{FAILED_RUN}")
    assert run.status_code == 200
    assert run.json()["error"].endswith("not found in <home>/blocks")
    listed = httpx.get(f"{env.node.url}/orders", headers={"Authorization": f"Bearer {env.token}"})
    assert FAILED_RUN in listed.text and home not in listed.text


@pytest.mark.parametrize("url", ["http://[::1", "http://peer:99999", "http://peer:x/", "http://:80/"])
def test_an_unusable_from_url_is_400_not_500(env: Env, url: str) -> None:
    r = httpx.post(
        f"{env.node.url}/orders",
        json={"order": str(env.order), "from": url},
        headers={**JSON, "Authorization": f"Bearer {env.token}"},
    )
    assert r.status_code == 400, r.text
    assert "gateway URL" in r.json()["message"] or "host" in r.json()["message"]
