"""A CAT Node process under load, on loopback: what clients see and what the node holds.

Two scenarios against one real ``cats node serve`` (its defaults, port 0, a fresh home):

1. **Mixed load**: 200 concurrent anonymous gateway GETs (a 256 KiB file's CAR) while 50
   concurrent authenticated ``POST /orders`` submit distinct Orders of a trivial stdlib
   Function (as CARs); then the time until every accepted run has settled.
2. **Dripping peer**: 45 authenticated JSON submissions whose ``from`` gateway answers at
   once and then sends one byte every few seconds, while a prober times anonymous
   ``GET /ipfs`` and ``GET /node`` requests every 0.25 s.

For each kind of request it prints the count, the errors (HTTP >= 400 other than the expected
ones, or no answer in time), and p50/p99 latency; and the node process's RSS (and that of its
process tree, Ray included) before and after. Not a test: run it once to get the figures.

    .venv/bin/python benchmarks/bench_mesh_load.py [--gets 200] [--orders 50] [--drips 45]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from cats_runtime.cas import CID, MemoryBlockStore, Repo, add_bytes, write_car
from cats_runtime.operations import (
    AllowList,
    Node,
    TokenStore,
    build_function,
    local_structure,
    make_order,
    order_blocks,
    store_structure,
)

CATS = str(Path(sys.executable).with_name("cats"))
CODE = "def main(ctx):\n    (ctx.output / 'out.txt').write_text(f'seed {ctx.seed}\\n')\n"
CAR = "application/vnd.ipld.car"


@dataclass
class Series:
    """Latencies and outcomes of one kind of request."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    notes: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float, ok: bool, note: str) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.errors += not ok
            self.notes[note] = self.notes.get(note, 0) + 1

    def line(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return f"{self.name:<34} none"
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
        notes = ", ".join(f"{k}: {v}" for k, v in sorted(self.notes.items()))
        return (
            f"{self.name:<34} {len(lat):>4} requests  {self.errors:>3} errors  "
            f"p50 {p50 * 1000:8.1f} ms  p99 {p99 * 1000:8.1f} ms  max {lat[-1] * 1000:8.1f} ms  ({notes})"
        )


def timed(series: Series, call: Callable[[], httpx.Response], expected: set[int]) -> httpx.Response | None:
    started = time.monotonic()
    try:
        response = call()
    except httpx.HTTPError as exc:
        series.add(time.monotonic() - started, False, type(exc).__name__)
        return None
    series.add(time.monotonic() - started, response.status_code in expected, str(response.status_code))
    return response


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, stack = [pid], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def memory(pid: int) -> str:
    family = tree(pid)
    total = sum(map(rss_kib, family)) / 1024
    return f"node {rss_kib(pid) / 1024:.0f} MiB RSS; with its {len(family) - 1} children {total:.0f} MiB"


class Served:
    """One ``cats node serve`` process on a port it chose itself."""

    def __init__(self, home: Path) -> None:
        port_file = home.parent / f"{home.name}.port"
        port_file.unlink(missing_ok=True)
        self.log = home.parent / f"{home.name}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    CATS,
                    "--home",
                    str(home),
                    "node",
                    "serve",
                    "--port",
                    "0",
                    "--port-file",
                    str(port_file),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "CATS_HOME": str(home)},
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the node did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}"

    def stop(self) -> None:
        family = tree(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        time.sleep(1)
        for pid in family[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def orders(
    client: Path, code: Path, count: int, seed0: int
) -> tuple[CID, list[tuple[CID, bytes]], MemoryBlockStore]:
    """``count`` distinct Orders of the Function in ``code``: (Function CID, [(Order, CAR)], blocks)."""
    blocks = MemoryBlockStore()
    made: list[tuple[CID, bytes]] = []
    with Node.open(client) as node:
        _, function = build_function(f"{code}:fn:main", node.store)
        structure = store_structure(local_structure(), node.store)
        data = add_bytes(b"load\n", node.store)
        for seed in range(seed0, seed0 + count):
            _, order = make_order(node, function, {"data": data}, {}, seed, structure)
            out = io.BytesIO()
            needed = list(order_blocks(node.store, order))
            write_car(out, [order], needed)
            made.append((order, out.getvalue()))
            for block in needed:
                blocks.put(block)
    return function, made, blocks


def drip_server(blocks: MemoryBlockStore, every: float) -> ThreadingHTTPServer:
    """A trustless gateway that answers every block at once, then drips its body a byte at a time."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            try:
                cid = CID.decode(self.path.split("?")[0].rsplit("/", 1)[-1])
                data = blocks.get(cid)
            except Exception:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.ipld.raw")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for byte in data:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(every)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def register_gateway(home: Path, org: str, url: str) -> bool:
    """Register the peer's gateway for ``org`` where the node supports it (``token add --gateway``)."""
    helptext = subprocess.run([CATS, "node", "token", "add", "--help"], capture_output=True, text=True).stdout
    if "--gateway" not in helptext:
        return False
    env = {**os.environ, "CATS_HOME": str(home)}
    done = subprocess.run(
        [CATS, "--home", str(home), "node", "token", "add", org, "--gateway", url],
        capture_output=True,
        text=True,
        env=env,
    )
    return done.returncode == 0


def wait_settled(url: str, token: str, runs: list[str], timeout: float) -> tuple[float, dict[str, int]]:
    started = time.monotonic()
    states: dict[str, int] = {}
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        while time.monotonic() - started < timeout:
            states = {}
            for run in runs:
                status = client.get(f"{url}/orders/{run}").json().get("status", "?")
                states[status] = states.get(status, 0) + 1
            if set(states) <= {"succeeded", "failed"}:
                break
            time.sleep(1)
    return time.monotonic() - started, states


def mixed(args: argparse.Namespace, root: Path) -> None:
    code = root / "code"
    code.mkdir()
    (code / "fn.py").write_text(CODE)
    function, made, _ = orders(root / "client", code, args.orders, 0)
    home = root / "node"
    Repo.open(home)
    token = TokenStore.for_home(home).issue("acme")
    AllowList.for_home(home).add(str(function))
    with Node.open(home) as node:
        data = add_bytes(os.urandom(256 * 1024), node.store)
    node_proc = Served(home)
    try:
        print(f"before: {memory(node_proc.proc.pid)}")
        gets, posts = Series("GET /ipfs/{cid}?format=car"), Series("POST /orders (CAR)")
        runs: list[str] = []
        headers = {"Content-Type": CAR, "Authorization": f"Bearer {token}"}

        # One asyncio client for all 250 requests: a thread and an httpx.Client per request
        # spent more of the two CPUs on the client than the node spent answering.
        async def one(client: httpx.AsyncClient, series: Series, method: str, url: str, **kw: Any) -> None:
            begun = time.monotonic()
            try:
                response = await client.request(method, url, **kw)
            except httpx.HTTPError as exc:
                series.add(time.monotonic() - begun, False, type(exc).__name__)
                return
            ok = response.status_code in (200, 202)
            series.add(time.monotonic() - begun, ok, str(response.status_code))
            if method == "POST" and response.status_code == 202:
                runs.append(response.json()["run"])

        async def burst() -> None:
            limits = httpx.Limits(max_connections=args.gets + args.orders)
            async with httpx.AsyncClient(base_url=node_proc.url, timeout=120, limits=limits) as client:
                await asyncio.gather(
                    *(one(client, gets, "GET", f"/ipfs/{data}?format=car") for _ in range(args.gets)),
                    *(one(client, posts, "POST", "/orders", content=car, headers=headers) for _, car in made),
                )

        started = time.monotonic()
        asyncio.run(burst())
        wall = time.monotonic() - started
        print(f"scenario 1: {args.gets} GETs + {args.orders} Orders at once, all answered in {wall:.1f} s")
        print("  " + gets.line())
        print("  " + posts.line())
        settled, states = wait_settled(node_proc.url, token, runs, timeout=900)
        print(f"  the {len(runs)} accepted runs settled {settled:.1f} s later: {states}")
        print(f"after: {memory(node_proc.proc.pid)}")
    finally:
        node_proc.stop()


def dripping(args: argparse.Namespace, root: Path) -> None:
    code = root / "code2"
    code.mkdir()
    (code / "fn.py").write_text(CODE)
    function, made, blocks = orders(root / "client2", code, args.drips, 1000)
    peer = drip_server(blocks, args.drip_every)
    peer_url = f"http://127.0.0.1:{peer.server_address[1]}"
    home = root / "node2"
    Repo.open(home)
    token = TokenStore.for_home(home).issue("acme")
    AllowList.for_home(home).add(str(function))
    registered = register_gateway(home, "acme", peer_url)
    with Node.open(home) as node:
        probe_data = add_bytes(b"probe\n", node.store)
    node_proc = Served(home)
    try:
        print(f"before: {memory(node_proc.proc.pid)}")
        submits = Series("POST /orders (JSON, dripping from)")
        probes_ipfs, probes_node = Series("probe GET /ipfs/{cid}?format=raw"), Series("probe GET /node")
        stop = threading.Event()

        def submit(order: CID) -> None:
            body = {"order": str(order), "from": peer_url}
            headers = {"Authorization": f"Bearer {token}"}
            timed(
                submits,
                lambda: httpx.post(
                    f"{node_proc.url}/orders", json=body, headers=headers, timeout=args.window + 30
                ),
                {202},
            )

        def probe() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    timed(
                        probes_ipfs,
                        lambda: client.get(f"{node_proc.url}/ipfs/{probe_data}?format=raw"),
                        {200},
                    )
                    timed(probes_node, lambda: client.get(f"{node_proc.url}/node"), {200})
                    time.sleep(0.25)

        prober = threading.Thread(target=probe)
        prober.start()
        with ThreadPoolExecutor(max_workers=args.drips) as pool:
            futures = [pool.submit(submit, order) for order, _ in made]
            time.sleep(args.window)
            stop.set()
            prober.join()
            for future in futures:
                future.result()
        print(
            f"scenario 2: {args.drips} submissions from a peer sending 1 byte / {args.drip_every:g} s "
            f"(gateway registered for the org: {'yes' if registered else 'not supported'}), "
            f"probes for {args.window:g} s"
        )
        for series in (submits, probes_ipfs, probes_node):
            print("  " + series.line())
        print(f"after: {memory(node_proc.proc.pid)}")
    finally:
        node_proc.stop()
        peer.shutdown()
        peer.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--drips", type=int, default=45)
    parser.add_argument("--drip-every", type=float, default=3.0, help="seconds between the peer's bytes")
    parser.add_argument("--window", type=float, default=40.0, help="seconds of probing in scenario 2")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="cats-bench-load-") as tmp:
        mixed(args, Path(tmp))
        dripping(args, Path(tmp))


if __name__ == "__main__":
    main()
