"""Start real ``cats node serve`` processes on free loopback ports, and stop them (tests only)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CATS = str(Path(sys.executable).with_name("cats"))
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free now, for tests that need one nothing listens on (never to hand to a server:
    another process may take it before the server binds it; servers bind port 0 themselves)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cats(
    home: Path, *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the ``cats`` CLI on ``home`` (a real process)."""
    env = {**os.environ, "CATS_HOME": str(home)}
    proc = subprocess.run(
        [CATS, "--home", str(home), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cats {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Ray's workers, raylet, GCS...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


@dataclass
class NodeProcess:
    """One running node."""

    home: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    args: tuple[str, ...] = ()
    _family: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def remember_family(self) -> None:
        """Note the node's child processes (Ray) so they can be reaped if the node is killed."""
        self._family.update(_descendants(self.proc.pid))

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the node (a crash), then reap the helper processes it started."""
        self.remember_family()
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._reap()

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL if needed; reap helpers."""
        if self.proc.poll() is None:
            self.remember_family()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._reap()

    def _reap(self) -> None:
        deadline = time.monotonic() + 3
        alive = set(self._family)
        while alive and time.monotonic() < deadline:
            alive = {pid for pid in alive if os.path.exists(f"/proc/{pid}")}
            time.sleep(0.2)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def start_node(home: Path, *args: str, port: int | None = None, timeout: float = 60) -> NodeProcess:
    """Start ``cats node serve`` for ``home`` and wait until ``GET /node`` answers.

    Without ``port`` the node binds port 0 itself and writes the port it got to ``--port-file``:
    a port picked here and handed on could be taken by another process in between.
    """
    home.mkdir(parents=True, exist_ok=True)
    port_file = home.parent / f".{home.name}-port-{os.getpid()}-{time.monotonic_ns()}"
    port_file.unlink(missing_ok=True)
    log = home.parent / f"{home.name}-node-{port or 'any'}.log"
    env = {**os.environ, "CATS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    command = [CATS, "--home", str(home), "node", "serve", "--port", str(port or 0)]
    command += ["--port-file", str(port_file)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*command, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    node = NodeProcess(home, port or 0, proc, log, args)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            port_file.unlink(missing_ok=True)
            raise AssertionError(f"node exited with {proc.returncode}:\n{node.output()}")
        if not node.port and port_file.exists():
            node.port = int(port_file.read_text())
            port_file.unlink()
        try:
            if node.port and httpx.get(f"{node.url}/node", timeout=2).status_code == 200:
                port_file.unlink(missing_ok=True)
                return node
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            node.stop()
            port_file.unlink(missing_ok=True)
            raise AssertionError(f"node not ready after {timeout}s:\n{node.output()}")
        time.sleep(0.1)


SLOW_FN = REPO_ROOT / "tests" / "mesh" / "fixtures" / "slowfn"


def make_order_car(
    client_home: Path,
    *,
    params: dict[str, object] | None = None,
    seed: int = 0,
    data: bytes = b"input data\n",
    spec: str | None = None,
    mode: str = "batch",
    network: bool = False,
) -> tuple[object, bytes, object]:
    """Build (in ``client_home``) an Order of the test Function over a small input; return
    (order CID, CAR bytes of everything it needs, Function CID: what a node's allow-list names)."""
    import io

    from cats_runtime.cas import add_bytes, write_car
    from cats_runtime.operations import (
        Node,
        build_function,
        local_structure,
        make_order,
        order_blocks,
        store_structure,
    )

    with Node.open(client_home) as node:
        _, function = build_function(
            spec or f"{SLOW_FN}:slow:main",
            node.store,
            mode=mode,  # type: ignore[arg-type]
            network=network,
        )
        structure = store_structure(local_structure(), node.store)
        data_cid = add_bytes(data, node.store)
        _, order = make_order(node, function, {"data": data_cid}, params or {}, seed, structure)
        out = io.BytesIO()
        write_car(out, [order], order_blocks(node.store, order))
    return order, out.getvalue(), function


def prepare_home(
    home: Path,
    org: str = "client",
    allow: list[str] = (),  # type: ignore[assignment]
    gateways: list[str] = (),  # type: ignore[assignment]
) -> str:
    """A node home with one token for ``org`` (and the gateways it may name in ``from``) and
    allow-list entries; returns the token."""
    from cats_runtime.cas import Repo
    from cats_runtime.operations import AllowList, TokenStore

    Repo.open(home)
    tokens = TokenStore.for_home(home)
    token = tokens.issue(org)
    for url in gateways:
        tokens.add_gateway(org, url)
    rules = AllowList.for_home(home)
    for entry in allow:
        rules.add(str(entry))
    return token


@contextlib.contextmanager
def allow_list_restored(home: Path) -> Iterator[Path]:
    """The allow-list file of ``home``, put back as it was when the block ends.

    A test that widens a module-wide node's allow-list must not leave the wider rules to the
    tests after it (the node re-reads the file when it changes, so the restore takes effect).
    """
    path = home / "node" / "allow.txt"
    before = path.read_bytes() if path.exists() else None
    try:
        yield path
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)


def wait_run(url: str, run_id: str, timeout: float = 180) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{url}/orders/{run_id}", timeout=10).json()
        if body["status"] in ("succeeded", "failed"):
            return body  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {body['status']} after {timeout}s")
        time.sleep(0.2)
