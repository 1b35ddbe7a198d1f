"""A node killed (SIGKILL) in the middle of a run comes back with the run settled and the store clean."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from nodeproc import cats, make_order_car, prepare_home, start_node, wait_run

from cats_runtime.cas import Repo
from cats_runtime.cas._walk import reachable


def test_a_run_interrupted_by_sigkill_is_marked_failed_after_restart(tmp_path: Path) -> None:
    _, car, code = make_order_car(tmp_path / "client", params={"sleep": 60})
    token = prepare_home(tmp_path / "node", "acme", allow=[str(code)])
    node = start_node(tmp_path / "node")
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/vnd.ipld.car"}
    try:
        r = httpx.post(f"{node.url}/orders", content=car, headers=auth)
        assert r.status_code == 202
        run = r.json()["run"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{node.url}/orders/{run}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(3)  # inside the function's sleep by now: Ray started, task running
        node.remember_family()
        node.kill()
    finally:
        node.stop()
    restarted = start_node(tmp_path / "node")
    try:
        settled = httpx.get(f"{restarted.url}/orders/{run}").json()
        assert settled["status"] == "failed"
        assert "node stopped while this run was running" in settled["error"]
        assert settled["finished_ms"] >= settled["started_ms"]
        # the node still works after the crash: the same Order (quick this time) runs to the end
        _, quick, _ = make_order_car(tmp_path / "client", params={"sleep": 0})
        again = httpx.post(f"{restarted.url}/orders", content=quick, headers=auth)
        assert again.status_code == 202
        assert wait_run(restarted.url, again.json()["run"])["status"] == "succeeded"
    finally:
        restarted.stop()
    repo = Repo.open(tmp_path / "node")
    assert repo.blocks.verify() == []  # every block file re-hashed: none torn or corrupt
    reachable(repo.blocks, repo.pins.roots())  # and every pinned DAG is complete


def test_a_second_node_on_the_same_home_is_refused(tmp_path: Path) -> None:
    prepare_home(tmp_path / "node")
    node = start_node(tmp_path / "node")
    try:
        other = cats(tmp_path / "node", "node", "serve", "--port", "1", check=False, timeout=60)
    finally:
        node.stop()
    assert other.returncode != 0
    assert "another process" in other.stderr
