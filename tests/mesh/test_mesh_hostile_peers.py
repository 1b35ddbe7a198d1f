"""A node fetching Orders for submitters, against hostile gateways (real node processes, loopback).

Dripping and silent gateways fail their own runs within the fetch deadline while the node's
gateway and run listing keep answering; only registered gateways are ever contacted, checked
after DNS resolution, without following redirects, and the submitter reads one generic error;
credentials in ``from`` are never recorded; ``GET /orders`` shows the caller's runs only; the
byte budget of a fetched Order is enforced.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nodeproc import NodeProcess, make_order_car, prepare_home, start_node, wait_run
from peers import ClosedPort, DripPeer, SilentPeer, StatusPeer, running, unused_cid

from cats_runtime.cas import CID, Repo, add_bytes
from cats_runtime.operations import TokenStore

GENERIC = "could not be fetched from the gateway given in 'from'"
DEADLINE = 5  # seconds: --fetch-deadline of the dripping test (its gateways drip 1 byte/s)
PER_ORG = 6


def _submit(url: str, token: str, order: str, source: str) -> httpx.Response:
    return httpx.post(
        f"{url}/orders",
        json={"order": order, "from": source},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _status(url: str, run: str) -> dict[str, Any]:
    return httpx.get(f"{url}/orders/{run}", timeout=30).json()  # type: ignore[no-any-return]


def _fetching(url: str, token: str) -> int:
    """How many of the token's organization's runs are fetching (its own run listing)."""
    r = httpx.get(
        f"{url}/orders",
        params={"status": "fetching", "limit": 1000},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return len(r.json()["runs"])


def _timed_get(url: str, **kwargs: Any) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = httpx.get(url, timeout=10, **kwargs)
    return time.monotonic() - started, response


def test_dripping_and_silent_gateways_fail_their_own_runs_and_never_slow_the_node(tmp_path: Path) -> None:
    client = tmp_path / "client"
    order, _, function = make_order_car(client, params={"sleep": 0}, seed=11)
    home = tmp_path / "node"
    with running(drip := DripPeer(interval=1.0), silent := SilentPeer()):
        client_node = start_node(client)
        tokens = {
            "good": prepare_home(home, "good", allow=[str(function)], gateways=[client_node.url]),
        }
        store = TokenStore.for_home(home)
        for org, peer in (("drip", drip), ("silent", silent)):
            tokens[org] = store.issue(org)
            store.add_gateway(org, peer.url)
        blob = add_bytes(os.urandom(20_000), Repo.open(home).blocks)
        node = start_node(
            home,
            "--fetch-deadline",
            str(DEADLINE),
            "--fetch-workers",
            str(2 * PER_ORG + 2),
            "--fetches-per-org",
            str(PER_ORG),
            "--max-queued",
            "64",
        )
        try:
            started = time.monotonic()
            jobs = [("drip", drip.url)] * 24 + [("silent", silent.url)] * 24
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                answers = list(
                    pool.map(
                        lambda i, j: _submit(node.url, tokens[j[0]], unused_cid(i), j[1]), range(48), jobs
                    )
                )
            assert [a.status_code for a in answers] == [202] * 48, [a.text for a in answers]
            hostile = [a.json()["run"] for a in answers]
            assert {a.json()["status"] for a in answers} == {"fetching"}
            good = _submit(node.url, tokens["good"], str(order), client_node.url)
            assert good.status_code == 202, good.text

            # While the hostile runs are held in their fetches, the node answers at once.
            slowest = 0.0
            good_fetched_while_hostile_fetching = False
            while True:
                for elapsed, response in (
                    _timed_get(f"{node.url}/ipfs/{blob}", params={"format": "raw"}),
                    _timed_get(f"{node.url}/orders", headers={"Authorization": f"Bearer {tokens['good']}"}),
                ):
                    assert response.status_code == 200, response.text
                    slowest = max(slowest, elapsed)
                still = sum(_fetching(node.url, tokens[org]) for org in ("drip", "silent"))
                if still and _status(node.url, good.json()["run"])["status"] != "fetching":
                    good_fetched_while_hostile_fetching = True
                if not still:
                    break
                assert time.monotonic() - started < 150, f"{still} runs still fetching"
                time.sleep(0.1)  # a poll, not a synchronization: the loop ends on the state above
            assert slowest < 1.0, f"a probe took {slowest:.2f}s"
            assert good_fetched_while_hostile_fetching, "another organization waited for the hostile ones"

            settled = [_status(node.url, r) for r in hostile]
            for run in settled:
                assert run["status"] == "failed"
                assert f"fetch deadline of {DEADLINE}s" in run["error"], run["error"]
                # One total deadline per fetch, not a timeout per read (each byte came in time).
                assert run["finished_ms"] - run["started_ms"] < DEADLINE * 1000 + 2500, run
            # Every fetch reached its gateway, and at most --fetches-per-org of one organization's
            # fetches were in progress at once (the node's own record of each fetch's interval).
            assert drip.requests >= 24 and silent.accepted >= 24
            for org in ("drip", "silent"):
                spans = [(r["started_ms"], r["finished_ms"]) for r in settled if r["org"] == org]
                most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
                assert 1 <= most <= PER_ORG, (org, most)
            done = wait_run(node.url, good.json()["run"], timeout=300)
            assert done["status"] == "succeeded", done["error"]
        finally:
            node.stop()
            client_node.stop()


class Env:
    node: NodeProcess
    tokens: dict[str, str]
    counter: StatusPeer
    redirect: StatusPeer
    failing: StatusPeer
    closed: ClosedPort


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("hostile")
    e = Env()
    e.counter = StatusPeer(404)  # any connection it gets is one the node should not have made
    e.redirect = StatusPeer(302, location=f"{e.counter.url}/ipfs/x")
    e.failing = StatusPeer(500)
    e.closed = ClosedPort()
    home = base / "node"
    e.tokens = {"acme": prepare_home(home, "acme"), "other": prepare_home(home, "other")}
    store = TokenStore.for_home(home)
    # A host name of this machine, registered without --allow-private: it resolves to loopback.
    store.add_gateway("acme", f"http://localhost:{e.counter.port}")
    store.add_gateway("acme", f"http://127.0.0.1:{e.closed.port}")
    store.add_gateway("acme", e.failing.url)
    e.node = start_node(home, "--allow-gateway", e.redirect.url, "--fetch-deadline", "20")
    yield e
    e.node.stop()
    for peer in (e.counter, e.redirect, e.failing, e.closed):
        peer.close()


def test_a_gateway_not_registered_for_the_organization_is_refused_without_a_connection(env: Env) -> None:
    for source in (
        env.counter.url,
        f"http://[::1]:{env.counter.port}",
        f"http://127.0.0.2:{env.counter.port}",
    ):
        r = _submit(env.node.url, env.tokens["acme"], unused_cid(1), source)
        assert r.status_code == 403, r.text
        assert "registered for organization 'acme'" in r.json()["message"]
    # Another organization may not use acme's registrations.
    r = _submit(env.node.url, env.tokens["other"], unused_cid(2), env.failing.url)
    assert r.status_code == 403, r.text
    assert env.counter.requests == 0 and env.failing.requests == 0


def test_ssrf_failures_all_read_the_same_and_the_detail_is_in_the_log(env: Env) -> None:
    cases = {
        "private after DNS": f"http://localhost:{env.counter.port}",
        "redirect": env.redirect.url,
        "refused": f"http://127.0.0.1:{env.closed.port}",
        "HTTP 500": env.failing.url,
    }
    errors = {}
    for i, (name, source) in enumerate(cases.items()):
        r = _submit(env.node.url, env.tokens["acme"], unused_cid(100 + i), source)
        assert r.status_code == 202, r.text
        done = wait_run(env.node.url, r.json()["run"], timeout=60)
        assert done["status"] == "failed"
        errors[name] = done["error"]
    # A port scanner learns nothing: every way of failing reads the same.
    assert len(set(errors.values())) == 1, "\n".join(f"{k}: {v}" for k, v in errors.items())
    assert GENERIC in errors["refused"]
    # localhost resolved to loopback: refused before connecting; the redirect was not followed.
    assert env.counter.requests == 0
    assert env.redirect.requests >= 1 and env.failing.requests >= 1
    log = env.node.output()
    assert "resolves only to non-public addresses" in log
    assert "HTTP 302" in log and "HTTP 500" in log


def test_credentials_in_from_are_never_recorded_and_orders_list_the_callers_runs_only(env: Env) -> None:
    secrets = ("hunter2", "S3CRET-apikey", "S3CRET-token", "S3CRET-sig", "S3CRET-pw")
    source = (
        f"http://alice:hunter2@127.0.0.1:{env.failing.port}/?apikey=S3CRET-apikey&access_token=S3CRET-token"
        "&X-Amz-Signature=S3CRET-sig&password=S3CRET-pw&keep=1"
    )
    r = _submit(env.node.url, env.tokens["acme"], unused_cid(200), source)
    assert r.status_code == 202, r.text
    clean = f"http://127.0.0.1:{env.failing.port}/?keep=1"
    assert r.json()["source"] == clean
    run = r.json()["run"]
    assert wait_run(env.node.url, run, timeout=60)["source"] == clean

    assert httpx.get(f"{env.node.url}/orders").status_code == 401
    mine = httpx.get(f"{env.node.url}/orders", headers={"Authorization": f"Bearer {env.tokens['acme']}"})
    theirs = httpx.get(f"{env.node.url}/orders", headers={"Authorization": f"Bearer {env.tokens['other']}"})
    assert mine.status_code == theirs.status_code == 200
    assert run in {r["run"] for r in mine.json()["runs"]}
    assert {r["org"] for r in mine.json()["runs"]} == {"acme"}
    assert theirs.json()["runs"] == []

    stored = b"".join(p.read_bytes() for p in (env.node.home / "node").glob("runs.sqlite*"))
    shown = mine.text + httpx.get(f"{env.node.url}/").text + httpx.get(f"{env.node.url}/orders/{run}").text
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret not in shown
        assert secret not in env.node.output()


def test_an_order_over_the_byte_budget_fails_with_limit_error_and_nothing_is_pinned(tmp_path: Path) -> None:
    client = tmp_path / "client"
    order, _, function = make_order_car(client, params={"sleep": 0}, data=os.urandom(1_600_000), seed=5)
    client_node = start_node(client)
    home = tmp_path / "node"
    token = prepare_home(home, "acme", allow=[str(function)], gateways=[client_node.url])
    node = start_node(home, "--max-car-mib", "1")
    try:
        r = _submit(node.url, token, str(order), client_node.url)
        assert r.status_code == 202, r.text
        done = wait_run(node.url, r.json()["run"], timeout=120)
    finally:
        node.stop()
        client_node.stop()
    assert done["status"] == "failed", done
    assert done["error"].startswith("LimitError: "), done["error"]
    assert "expected at most" in done["error"]  # the budget left of --max-car-mib 1
    assert Repo.open(home).pins.roots() == []
    from cats_runtime.operations import Node

    with Node.open(client) as local:
        inputs = [CID.decode(str(c)) for c in local.load(order).inputs.values()]  # type: ignore[attr-defined]
    with Node.open(home) as there:
        assert not any(there.catalog.boms_for_order(order)), "no BOM for a refused Order"
    assert inputs and all(cid not in Repo.open(home).pins for cid in inputs)
