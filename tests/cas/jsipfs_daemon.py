"""A real IPFS RPC server for the Kubo-client tests: the js-ipfs daemon on loopback.

Kubo itself cannot be installed here (its npm package downloads the binary from a host this
machine cannot reach), so the tests talk to js-ipfs 0.18 (npm ``ipfs@0.66.1``, installed by
``.ci/install-jsipfs.sh`` into ``tests/jsipfs``), which serves the same ``/api/v0`` RPC API and a
path gateway. Its known deviations from Kubo are handled by the client and marked in the tests.

Test modules use the ``jsipfs`` fixture by importing it::

    from jsipfs_daemon import jsipfs  # noqa: F401  (pytest fixture)

The daemon starts once per session whichever modules import the fixture (a process-wide
singleton with a reference count), and is killed by PID when the last user is torn down.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

JSIPFS_DIR = Path(__file__).resolve().parents[1] / "jsipfs"
JSIPFS_BIN = JSIPFS_DIR / "node_modules" / ".bin" / "jsipfs"
START_TIMEOUT = 90.0


@dataclass
class Daemon:
    """A running js-ipfs daemon."""

    process: subprocess.Popen[bytes]
    repo: Path
    api_url: str
    gateway_url: str
    log_path: Path

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


# The daemon binds port 0 itself and says which port it got (a port picked here and handed on
# could be taken by another process in between):
#   HTTP API listening on /ip4/127.0.0.1/tcp/42463/http
#   Gateway (read only) listening on /ip4/127.0.0.1/tcp/44257/http
_ANNOUNCED = {
    "api": re.compile(r"HTTP API listening on /ip4/127\.0\.0\.1/tcp/(\d+)"),
    "gateway": re.compile(r"Gateway \(read only\) listening on /ip4/127\.0\.0\.1/tcp/(\d+)"),
}


def _announced_ports(log_path: Path) -> dict[str, int]:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {}
    return {name: int(m.group(1)) for name, rx in _ANNOUNCED.items() if (m := rx.search(text))}


def _env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IPFS_", "HTTP_PROXY", "HTTPS_PROXY"))}
    env["IPFS_PATH"] = str(repo)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def unavailable_reason() -> str | None:
    """Why the daemon cannot be started here, or None."""
    if shutil.which("node") is None:
        return "node is not installed, so the js-ipfs RPC server cannot run"
    if not JSIPFS_BIN.exists():
        return f"js-ipfs is not installed in {JSIPFS_DIR}; run .ci/install-jsipfs.sh"
    return None


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the daemon by PID: SIGTERM, then SIGKILL (js-ipfs ignores SIGTERM for a while)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def start() -> Daemon:
    """Init a throwaway repo, bind API and gateway to free loopback ports, start the daemon."""
    repo = Path(tempfile.mkdtemp(prefix="cats-jsipfs-"))
    env = _env(repo)
    init = subprocess.run(
        [str(JSIPFS_BIN), "init", "--profile", "test"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if init.returncode != 0:
        raise RuntimeError(f"jsipfs init failed ({init.returncode}): {init.stderr.decode(errors='replace')}")
    config_path = repo / "config"
    config = json.loads(config_path.read_text())
    addresses = config.setdefault("Addresses", {})
    addresses["API"] = "/ip4/127.0.0.1/tcp/0"
    addresses["Gateway"] = "/ip4/127.0.0.1/tcp/0"
    addresses["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    # The gRPC endpoint defaults to a fixed port (5003): move it so parallel sessions cannot clash.
    addresses["RPC"] = "/ip4/127.0.0.1/tcp/0"
    addresses["Delegates"] = []
    config["Bootstrap"] = []
    discovery = config.setdefault("Discovery", {})
    discovery["MDNS"] = {"Enabled": False}
    discovery["webRTCStar"] = {"Enabled": False}
    config_path.write_text(json.dumps(config, indent=2))

    log_path = repo / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(JSIPFS_BIN), "daemon"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    daemon = Daemon(process, repo, "", "", log_path)
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0) as http:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jsipfs daemon exited with {process.returncode}:\n{daemon.log_tail()}")
            ports = _announced_ports(log_path)
            if not daemon.api_url and len(ports) == len(_ANNOUNCED):
                daemon.api_url = f"http://127.0.0.1:{ports['api']}"
                daemon.gateway_url = f"http://127.0.0.1:{ports['gateway']}"
            try:
                if daemon.api_url and http.post(f"{daemon.api_url}/api/v0/version").status_code == 200:
                    return daemon
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                stop(process)
                raise RuntimeError(f"jsipfs daemon API not up after {START_TIMEOUT:g}s:\n{daemon.log_tail()}")
            time.sleep(0.2)


_lock = threading.Lock()
_daemon: Daemon | None = None
_users = 0


def _shutdown() -> None:
    global _daemon
    if _daemon is not None:
        stop(_daemon.process)
        shutil.rmtree(_daemon.repo, ignore_errors=True)
        _daemon = None


atexit.register(_shutdown)  # a safety net if the session is interrupted before teardown


@pytest.fixture(scope="session")
def jsipfs() -> Iterator[Daemon]:
    """The session's js-ipfs daemon (skips only when js-ipfs is not installed)."""
    global _daemon, _users
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with _lock:
        if _daemon is None:
            _daemon = start()
        _users += 1
        daemon = _daemon
    try:
        yield daemon
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _shutdown()
