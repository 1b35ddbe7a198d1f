"""A node's own Ray: stopped with the node on SIGTERM (no crash dump), and a restarted node leaves
nothing of a Ray whose node and supervisor were SIGKILLed. Real node processes, real Ray."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
from local_ray_helpers import gone, group_members, poll, ray_status

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mesh"))
from nodeproc import NodeProcess, make_order_car, prepare_home, start_node, wait_run

CAR = {"Content-Type": "application/vnd.ipld.car"}


def _run_one_order(node: NodeProcess, token: str, car: bytes) -> None:
    headers = {**CAR, "Authorization": f"Bearer {token}"}
    r = httpx.post(f"{node.url}/orders", content=car, headers=headers, timeout=120)
    assert r.status_code == 202, r.text
    assert wait_run(node.url, r.json()["run"], timeout=600)["status"] == "succeeded"


def test_sigterm_stops_the_node_and_its_ray_cleanly_and_a_restart_cleans_up_a_killed_one(
    tmp_path: Path,
) -> None:
    home = tmp_path / "node"
    _, car, function = make_order_car(tmp_path / "client", params={"sleep": 0})
    _, second_car, _ = make_order_car(tmp_path / "client", params={"sleep": 0}, seed=1)
    token = prepare_home(home, "acme", allow=[str(function)])

    node = start_node(home)
    try:
        _run_one_order(node, token, car)
        ray = ray_status(home)
        assert ray["running"] and ray["owner"] == node.proc.pid  # the node's own Ray
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=120) == 0
        log = node.output()
        assert "SIGTERM received" not in log and "PC: @" not in log, log[-2000:]
        assert "Traceback" not in log, log[-2000:]
        poll(lambda: gone(ray["pid"]) and not group_members(ray["pgid"]), "the node's Ray to stop")
        assert ray_status(home) == {"running": False}
    finally:
        node.stop()

    # A crash: the node and its Ray supervisor SIGKILLed at once, leaving Ray's processes behind.
    node = start_node(home)
    try:
        _run_one_order(node, token, second_car)
        ray = ray_status(home)
        os.kill(ray["pid"], signal.SIGKILL)
        node.proc.kill()
        node.proc.wait(timeout=60)
    finally:
        node.stop()
    node = start_node(home)  # the restarted node cleans up after the dead one before serving
    try:
        assert not group_members(ray["pgid"]), "processes of the killed node's Ray survived a restart"
        assert not Path(ray["temp_dir"]).exists()
        assert ray_status(home) == {"running": False}
    finally:
        node.stop()
    assert not group_members(ray["pgid"])
