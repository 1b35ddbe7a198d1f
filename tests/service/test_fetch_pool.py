"""The fetch pool: its own threads, at most ``per_org`` jobs of one organization at once, fair turns."""

from __future__ import annotations

import threading
import time

from cats_runtime.service._fetches import FetchPool


def test_one_organization_cannot_take_the_pool_from_another() -> None:
    pool = FetchPool(workers=3, per_org=2)
    release = threading.Event()
    lock = threading.Lock()
    running = {"a": 0, "b": 0}
    most = {"a": 0, "b": 0}
    done: list[str] = []

    def job(org: str, block: bool) -> None:
        with lock:
            running[org] += 1
            most[org] = max(most[org], running[org])
        if block:
            release.wait(30)
        with lock:
            running[org] -= 1
            done.append(org)

    try:
        for _ in range(6):
            pool.submit("a", lambda: job("a", True))  # a dripping peer: each job hangs
        pool.submit("b", lambda: job("b", False))
        deadline = time.monotonic() + 10
        while "b" not in done:  # b's job ran although a has four more waiting
            assert time.monotonic() < deadline, "b waited for a"
            time.sleep(0.01)
        assert done == ["b"] and most["a"] == 2
        release.set()
        while len(done) < 7:
            assert time.monotonic() < deadline + 20
            time.sleep(0.01)
        assert most["a"] == 2  # never more than per_org at once, even with a free worker
    finally:
        release.set()
        pool.stop()
