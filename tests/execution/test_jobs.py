"""The Ray Jobs path against a real `ray start --head` on loopback, with token authentication."""

from __future__ import annotations

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

from cats_runtime.cas import MemoryBlockStore, _unixfs
from cats_runtime.errors import AuthError, InvalidInputError, PeerError
from cats_runtime.execution import JobsExecutor, TaskResult, TaskSpec
from cats_runtime.execution._jobs import decode_result_line, encode_result_line

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head() -> Iterator[tuple[str, str, int]]:
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip("the `ray` command is not installed next to this Python")
    # Short paths: Ray puts unix sockets under the temp dir. A private HOME gives the head its own token.
    root = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    home = root / "home"
    home.mkdir()
    (root / "tmp").mkdir()  # the head's TMPDIR: what its killed processes leave goes with root
    dash = _free_port()
    client = _free_port()
    token = secrets.token_hex(32)
    env = {
        **os.environ,
        "HOME": str(home),
        "TMPDIR": str(root / "tmp"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    proc = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            f"--port={_free_port()}",
            f"--dashboard-port={dash}",
            f"--ray-client-server-port={client}",
            # Fixed defaults (e.g. the agent's 52365) would clash with the session's local Ray.
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
            "--dashboard-host=127.0.0.1",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--include-dashboard=true",
            "--disable-usage-stats",
            f"--temp-dir={root / 't'}",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if (
                    httpx.get(
                        f"http://127.0.0.1:{dash}/api/version",
                        timeout=2,
                        headers={"Authorization": f"Bearer {token}"},
                    ).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail("ray start --head exited early")
            time.sleep(1)
        else:
            pytest.fail("the Ray head did not come up within 300 s")
        yield f"http://127.0.0.1:{dash}", token, client
    finally:
        # Only the processes this fixture started: the head's own process group.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def _spec(tmp_path: Path, store: MemoryBlockStore, body: str) -> TaskSpec:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "fn.py").write_text(body)
    doc = tmp_path / "doc.txt"
    doc.write_text("remote\n")
    return TaskSpec(
        "batch",
        str(_unixfs.add_path(code, store).cid),
        "fn:main",
        {"doc": str(_unixfs.add_path(doc, store).cid)},
        {"n": 2},
        0,
    )


def test_jobs_api_runs_tasks_without_the_callers_disk(
    ray_head: tuple[str, str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, token, _ = ray_head
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    monkeypatch.setenv("CATS_RAY_JOB_PYTHON", sys.executable)
    store = MemoryBlockStore()
    spec = _spec(
        tmp_path,
        store,
        (
            "def main(ctx):\n"
            "    (ctx.output / 'o').write_text(ctx.inputs['doc'].read_text() * ctx.params['n'])\n"
            "    print('on the cluster')\n"
        ),
    )
    sink = MemoryBlockStore()
    [outcome] = JobsExecutor(address, store).run([spec], sink)
    assert outcome.status == "succeeded", outcome.log
    assert outcome.output is not None and sink.has(outcome.output)
    o = {e.name: e.cid for e in _unixfs.ls(sink, outcome.output)}["o"]
    assert b"".join(_unixfs.cat(sink, o)) == b"remote\nremote\n"
    assert "on the cluster" in outcome.log


def test_jobs_api_rejects_a_wrong_token(
    ray_head: tuple[str, str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, _, _ = ray_head
    monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong-token")
    store = MemoryBlockStore()
    spec = _spec(tmp_path, store, "def main(ctx):\n    pass\n")
    with pytest.raises(AuthError, match=r"Ray Jobs API at .* refused the token"):
        JobsExecutor(address, store).run([spec], MemoryBlockStore())


def test_result_lines_round_trip_and_reject_garbage() -> None:
    r = TaskResult("k", "succeeded", b"\x01\x55", [(b"\x01", b"data")], "log", None, "h", 1, 2)
    assert decode_result_line(encode_result_line(r)) == r
    with pytest.raises(PeerError, match="malformed"):
        decode_result_line("CATS-TASK !!!")
    with pytest.raises(InvalidInputError, match="http"):
        JobsExecutor("ray://x:1", MemoryBlockStore())


def test_cats_run_through_the_jobs_api(
    ray_head: tuple[str, str, int], ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cats_runtime.operations import Node, build_function, run, verify

    address, token, _ = ray_head
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    monkeypatch.setenv("CATS_RAY_JOB_PYTHON", sys.executable)
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / name).write_text(name * 3)
    code = tmp_path / "code"
    code.mkdir()
    (code / "fn.py").write_text(
        "def main(ctx):\n    (ctx.output / ctx.datum.name).write_text(ctx.datum.path.read_text().upper())\n"
    )
    with Node.open(tmp_path / "home") as node:
        _, fn = build_function(f"{code}:fn:main", node.store, mode="map")
        out = run(node, function=fn, inputs={"f": _unixfs.add_path(folder, node.store).cid}, address=address)
        assert out.status == "succeeded" and out.computed == 3
        invoice = node.load(out.invoice)
        assert invoice.executor["cluster"] == address
        local = verify(node, out.bom)  # re-executed on the embedded Ray this time: same output
        assert local.verdict == "match"


def test_cats_run_over_ray_client(ray_head: tuple[str, str, int], tmp_path: Path) -> None:
    """`cats run --ray-address ray://...` in a fresh process: blocks are shipped with the tasks."""
    _, token, port = ray_head
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the client server comes up after the dashboard
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            break
        except OSError:
            time.sleep(1)
    code = tmp_path / "code"
    code.mkdir()
    (code / "fn.py").write_text(
        "def main(ctx):\n    (ctx.output / 'o').write_text(ctx.inputs['doc'].read_text()[::-1])\n"
    )
    doc = tmp_path / "doc.txt"
    doc.write_text("abc")
    env = {
        **os.environ,
        "CATS_HOME": str(tmp_path / "home"),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    argv = [
        sys.executable,
        "-c",
        "from cats_runtime.cli import main; main()",
        "run",
        "--function",
        f"{code}:fn:main",
        "--input",
        f"doc={doc}",
        "--ray-address",
        f"ray://127.0.0.1:{port}",
        "--json",
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    proxier_failures = ("Starting Ray client server failed", "psutil.ZombieProcess")
    if done.returncode != 0 and any(failure in done.stderr for failure in proxier_failures):
        # Ray's proxier gives each client a server of its own with a fixed start-up wait that a
        # loaded 2-core machine can miss, and its psutil check can catch the previous client's
        # server as a zombie (Ray's, not ours): one more connection, the same checks.
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"status": "succeeded"' in done.stdout
