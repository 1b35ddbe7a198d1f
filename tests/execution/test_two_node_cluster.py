"""A run on a two-node Ray cluster: a head and a worker started with `ray start`, nothing shared.

The head has no CPU for tasks (``--num-cpus=0``), so every task lands on the worker. The worker
node has its own temp dir, HOME and Environment cache (``CATS_ENV_CACHE``): the Function's
Environment must be built there from blocks that travel with the tasks (the Environment record
and its wheels, read from the CAS), not from the driver's disk or any package index.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SIX = "six==1.17.0 --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_ports() -> list[str]:
    # Every port a Ray node opens, chosen free: Ray's fixed defaults would clash with another node
    # on this machine (the other node of this cluster, or a test session's local Ray).
    return [
        f"--node-manager-port={_free_port()}",
        f"--object-manager-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
    ]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, Path, dict[str, str]]]:
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip("the `ray` command is not installed next to this Python")
    root = Path(tempfile.mkdtemp(prefix="r2", dir="/tmp"))  # short: Ray's unix sockets live below
    token = secrets.token_hex(32)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    gcs, client = _free_port(), _free_port()
    dirs = {name: root / name for name in ("head", "worker", "wenvs", "whome", "wtmp")}
    for d in dirs.values():
        d.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "CATS_"))}
    head_env = {**base, **auth, "HOME": str(dirs["head"])}
    worker_env = {
        **base,
        **auth,
        "HOME": str(dirs["whome"]),
        "TMPDIR": str(dirs["wtmp"]),
        "CATS_ENV_CACHE": str(dirs["wenvs"]),
    }
    common = ["--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            *common,
            *_node_ports(),
            f"--port={gcs}",
            f"--ray-client-server-port={client}",
            "--include-dashboard=false",
            "--num-cpus=0",
            f"--temp-dir={dirs['head'] / 't'}",
        ],
        env=head_env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs = [head]
    log = (root / "worker.log").open("wb")
    try:
        _wait_port(client, head, "the head's Ray client server")
        worker = subprocess.Popen(
            [
                str(ray_bin),
                "start",
                f"--address=127.0.0.1:{gcs}",
                *common,
                *_node_ports(),
                "--num-cpus=2",
                f"--temp-dir={dirs['worker'] / 't'}",
            ],
            env=worker_env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        procs.append(worker)
        _wait_cpus(gcs, auth, worker, root / "worker.log")
        yield f"ray://127.0.0.1:{client}", dirs["wenvs"], auth
    finally:
        for proc in reversed(procs):
            _stop(proc)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what}: ray start exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            time.sleep(1)
    pytest.fail(f"{what} did not come up within 300 s")


def _wait_cpus(gcs: int, auth: dict[str, str], worker: subprocess.Popen[bytes], log: Path) -> None:
    """Until the cluster has the worker's 2 CPUs (asked through `ray status`, a separate client)."""
    ray_bin = Path(sys.executable).with_name("ray")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(f"the worker node's ray start exited early: {log.read_text()[-2000:]}")
        done = subprocess.run(
            [str(ray_bin), "status", f"--address=127.0.0.1:{gcs}"],
            env={**os.environ, **auth},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if "0.0/2.0 CPU" in done.stdout:
            return
        time.sleep(2)
    pytest.fail("the worker node did not join with 2 CPUs within 300 s")


def _cats(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", "from cats_runtime.cli import main; main()", *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0 and "Starting Ray client server failed" in done.stderr:
        # Ray's proxier starts a server per client with a fixed wait a loaded 2-core machine can
        # miss (Ray's, not ours): one more connection, the same checks.
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    return done


def test_tasks_on_the_worker_build_their_environment_from_the_cas(
    cluster: tuple[str, Path, dict[str, str]], tmp_path: Path
) -> None:
    address, worker_envs, auth = cluster
    code = tmp_path / "code"
    code.mkdir()
    (code / "fn.py").write_text(
        "import six\n"
        "def main(ctx):\n"
        "    (ctx.output / ctx.datum.name).write_text(six.__version__ + ':' + ctx.datum.path.read_text())\n"
    )
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(SIX)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        (data / f"d{i}.txt").write_text(f"datum {i}")
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "CATS_"))},
        **auth,
        "CATS_HOME": str(home),
    }
    done = _cats(
        [
            "run",
            "--function",
            f"{code}:fn:main",
            "--requirements",
            str(reqs),
            "--mode",
            "map",
            "--input",
            f"data={data}",
            "--ray-address",
            address,
            "--json",
        ],
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["status"] == "succeeded", out
    # Built on the worker node, in its own cache, from the blocks that came with the tasks.
    built = [p.name for p in worker_envs.iterdir() if not p.name.startswith(".")]
    assert len(built) == 1 and built[0].startswith("bafy"), built
    assert (worker_envs / built[0] / ".cats-environment").is_file()
    got = _cats(["cat", f"{out['output']}/d2.txt"], env)
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout == "1.17.0:datum 2"
