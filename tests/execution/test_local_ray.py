"""The embedded Ray binds only loopback; the warm local Ray of a home is reused, stopped, replaced.

Everything here is real processes: ``cats`` commands, Ray's GCS, raylet and agents, read through
the kernel (listening sockets, process groups).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from local_ray_helpers import (
    cats,
    gone,
    group_members,
    is_loopback,
    listening,
    poll,
    ray_status,
    tiny_function,
)

REPO = Path(__file__).resolve().parents[2]

_EMBEDDED = textwrap.dedent(
    """
    import sys
    from cats_runtime.execution import ensure_ray
    ensure_ray(None)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_the_embedded_ray_listens_only_on_loopback(tmp_path: Path) -> None:
    # Ray's files go under the test's directory (RAY_TMPDIR, HOME), never /tmp/ray or ~/.ray.
    short = Path(os.environ.get("TMPDIR", "/tmp")) / f"cats-t{os.getpid()}"  # Ray's socket paths are short
    short.mkdir(mode=0o700)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path), "RAY_TMPDIR": str(short)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _EMBEDDED],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        sockets = listening(proc.pid)
        names = {name for _, name, _, _ in sockets}
        assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), sockets
        exposed = [s for s in sockets if not is_loopback(s[2])]
        assert not exposed, f"embedded Ray ports reachable from other hosts: {exposed}"
    finally:
        proc.communicate(timeout=120)  # closing stdin ends the driver, which shuts Ray down
        poll(lambda: not group_members(proc.pid), "the embedded Ray's processes to exit", 60)
        for pid in group_members(proc.pid):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(short)], check=True)


def test_runs_reuse_one_warm_ray_that_stop_ends_and_kill_9_replaces(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        _reuse_stop_replace(tmp_path, home)
    finally:
        cats(home, "ray", "stop", check=False)  # nothing left running if an assertion failed


def _reuse_stop_replace(tmp_path: Path, home: Path) -> None:
    spec, data = tiny_function(tmp_path)
    warm = {"CATS_RAY_IDLE_TIMEOUT": "600"}
    cats(home, "run", "--function", spec, "--input", f"data={data}", "--seed", "1", env=warm)
    first = ray_status(home)
    assert first["running"] and first["owner"] is None
    pid, pgid = first["pid"], first["pgid"]

    # Its files are private; every port of its Ray is on loopback.
    ray_dir = home / "ray"
    assert stat.S_IMODE(ray_dir.stat().st_mode) == 0o700
    for name in ("state.json", "auth_token"):
        assert stat.S_IMODE((ray_dir / name).stat().st_mode) == 0o600, name
    sockets = listening(pid)
    assert sockets and all(is_loopback(ip) for _, _, ip, _ in sockets), sockets
    assert first["gcs_address"].startswith("127.0.0.1:")

    # The second run reuses it: same supervisor, same Ray session.
    cats(home, "run", "--function", spec, "--input", f"data={data}", "--seed", "2", env=warm)
    second = ray_status(home)
    assert (second["pid"], second["session_dir"]) == (pid, first["session_dir"])
    assert second["runs"] >= 2

    # Concurrent starts on one home find the one Ray (the lock), none starts a second.
    with ThreadPoolExecutor(2) as pool:
        starts = list(pool.map(lambda _: ray_status_after_start(home), range(2)))
    assert {s["pid"] for s in starts} == {pid} and not any(s["new"] for s in starts)

    # kill -9 of the supervisor: the state file is stale; the next start cleans up and replaces it.
    os.kill(pid, signal.SIGKILL)
    poll(lambda: gone(pid), "the killed supervisor to die")
    assert ray_status(home) == {"running": False}
    replaced = ray_status_after_start(home)
    assert replaced["new"] and replaced["pid"] != pid
    assert not group_members(pgid), "processes of the killed Ray survived its replacement"

    # cats ray stop ends every process of the Ray's group and removes its files.
    out = cats(home, "ray", "stop").stdout
    assert f"stopped pid {replaced['pid']}" in out
    assert not group_members(replaced["pgid"])
    assert ray_status(home) == {"running": False}
    assert not (ray_dir / "state.json").exists() and not Path(replaced["temp_dir"]).exists()


def ray_status_after_start(home: Path) -> dict[str, object]:
    import json

    return json.loads(cats(home, "ray", "start", "--json").stdout)  # type: ignore[no-any-return]


def test_an_idle_warm_ray_stops_by_itself(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        _idle_stop(tmp_path, home)
    finally:
        cats(home, "ray", "stop", check=False)


def _idle_stop(tmp_path: Path, home: Path) -> None:
    spec, data = tiny_function(tmp_path)
    cats(home, "run", "--function", spec, "--input", f"data={data}", env={"CATS_RAY_IDLE_TIMEOUT": "1"})
    # The supervisor may already be gone; if not, its state names it.
    state = home / "ray" / "state.json"
    if state.exists():
        import json

        doc = json.loads(state.read_text())
        poll(lambda: gone(doc["pid"]) and not group_members(doc["pgid"]), "the idle Ray to stop")
    poll(lambda: not state.exists(), "the idle Ray's state file to go")
    assert ray_status(home) == {"running": False}


# A supervisor that answers one status and then, like one reaching its idle timeout with a
# client's connection still in its listen queue, closes that connection unread and exits.
_VANISHING = textwrap.dedent(
    """
    import json, os, socket, sys, time
    from pathlib import Path
    from cats_runtime.execution._local_ray import _recv, _send, _status_fields, _write_private

    ray_dir, temp = Path(sys.argv[1]), Path(sys.argv[2])
    temp.mkdir(parents=True, mode=0o700)
    sock_path = temp / "cats.sock"
    state = {"home": str(ray_dir.parent), "pid": os.getpid(), "pgid": os.getpgid(0),
             "socket": str(sock_path), "temp_dir": str(temp), "session_dir": "", "gcs_address": "",
             "started": time.time(), "idle_timeout": 600.0, "owner": None, "ready": True}
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(16)
    _write_private(ray_dir / "state.json", json.dumps(state))
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        request = _recv(conn)
        if request.get("op") == "status":
            _send(conn, {**_status_fields(state), "runs": 1})
            conn.close()
            continue
        server.close()  # the run request is dropped, never answered: this supervisor is gone
        conn.close()
        print("dropped", request.get("op"), flush=True)
        sys.exit(0)
    """
)


def test_a_run_that_meets_a_supervisor_going_idle_starts_a_new_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec, data = tiny_function(tmp_path)
    ray_dir = home / "ray"
    ray_dir.mkdir(parents=True, mode=0o700)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    fake = subprocess.Popen(
        [sys.executable, "-c", _VANISHING, str(ray_dir), str(tmp_path / "gone" / "r")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "ready"
        out = cats(home, "run", "--function", spec, "--input", f"data={data}", "--json", check=False)
        # Before the acknowledged protocol this run failed: "the local Ray ... went away mid-run".
        assert out.returncode == 0, out.stdout + out.stderr
        # (The retry may SIGKILL it while it exits: the stale-state cleanup ends a wedged supervisor.)
        assert fake.stdout.readline().strip() == "dropped run", "the vanishing supervisor never saw the run"
        status = ray_status(home)
        assert status["running"] and status["pid"] != fake.pid
    finally:
        if fake.poll() is None:
            fake.kill()
        fake.communicate()
        cats(home, "ray", "stop", check=False)
