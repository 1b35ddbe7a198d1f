"""Load on one real node: 200 concurrent gateway requests and 50 concurrent Order submissions."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Iterator

import httpx
import pytest
from nodeproc import NodeProcess, make_order_car, prepare_home, start_node, wait_run

from cats_runtime.cas import CID, Repo, add_bytes, read_car

GATEWAY_REQUESTS = 200
ORDERS = 50


@pytest.fixture(scope="module")
def loaded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NodeProcess, list[CID], str, list[bytes]]]:
    base = tmp_path_factory.mktemp("load")
    cars = []
    code = None
    for seed in range(ORDERS):
        _, car, code = make_order_car(base / "client", params={"sleep": 0}, seed=seed)
        cars.append(car)
    token = prepare_home(base / "node", "loadtest", allow=[str(code)])
    repo = Repo.open(base / "node")
    blobs = [add_bytes(os.urandom(50_000 + 1000 * i), repo.blocks) for i in range(20)]
    node = start_node(base / "node", "--max-runs", "2", "--max-queued", str(ORDERS))
    yield node, blobs, token, cars
    node.stop()


def test_200_concurrent_gateway_requests_are_all_answered_correctly(
    loaded: tuple[NodeProcess, list[CID], str, list[bytes]],
) -> None:
    node, blobs, _, _ = loaded

    async def one(client: httpx.AsyncClient, i: int) -> bool:
        cid = blobs[i % len(blobs)]
        if i % 2:
            r = await client.get(f"/ipfs/{cid}", params={"format": "raw"})
            return r.status_code == 200 and cid.matches(r.content)
        r = await client.get(f"/ipfs/{cid}", params={"format": "car"})
        blocks = list(read_car(io.BytesIO(r.content)))  # verifies every block
        return r.status_code == 200 and [b.cid for b in blocks] == [cid]

    async def main() -> list[bool]:
        limits = httpx.Limits(max_connections=GATEWAY_REQUESTS)
        async with httpx.AsyncClient(base_url=node.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*(one(client, i) for i in range(GATEWAY_REQUESTS)))

    results = asyncio.run(main())
    assert len(results) == GATEWAY_REQUESTS
    assert all(results), f"{results.count(False)} wrong answers"


def test_50_concurrent_order_submissions_are_all_accepted_and_run(
    loaded: tuple[NodeProcess, list[CID], str, list[bytes]],
) -> None:
    node, _, token, cars = loaded

    async def submit(client: httpx.AsyncClient, car: bytes) -> httpx.Response:
        return await client.post(
            "/orders",
            content=car,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/vnd.ipld.car"},
        )

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=node.url, timeout=120, limits=httpx.Limits(max_connections=ORDERS)
        ) as client:
            return await asyncio.gather(*(submit(client, car) for car in cars))

    answers = asyncio.run(main())
    assert [a.status_code for a in answers] == [202] * ORDERS, [
        a.text for a in answers if a.status_code != 202
    ]
    runs = [a.json()["run"] for a in answers]
    orders = [a.json()["order"] for a in answers]
    assert len(set(runs)) == ORDERS and len(set(orders)) == ORDERS
    settled = [wait_run(node.url, run, timeout=300) for run in runs]
    assert [s["status"] for s in settled] == ["succeeded"] * ORDERS, [s["error"] for s in settled]
    outputs = {s["output"] for s in settled}
    assert len(outputs) == ORDERS  # each seed wrote a different result
    listed = httpx.get(
        f"{node.url}/orders",
        params={"limit": 1000, "status": "succeeded"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()["runs"]
    assert set(runs) <= {r["run"] for r in listed}
    digest = hashlib.sha256(b"".join(sorted(str(s["bom"]).encode() for s in settled))).hexdigest()
    assert digest  # every run has a BOM
    assert all(s["bom"] for s in settled)
