"""The bwrap fork server: one warm sandbox per worker forks every call into namespaces of its own.

What must hold for it to be as strong as a fresh bwrap per call: nothing a call leaves anywhere
(files, processes, sockets) reaches the next call, a call has no capability and cannot see the
work directory the server holds, the wall-clock limit still kills, and a server that dies costs
nothing but speed (the call runs in a fresh bwrap). Calls run the way a worker runs them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cats_runtime.cas import MemoryBlockStore, _unixfs
from cats_runtime.execution import (
    SandboxSettings,
    TaskLimits,
    TaskResult,
    TaskSpec,
    _sandbox,
    bwrap_available,
    run_task,
)

pytestmark = pytest.mark.skipif(bwrap_available() is not None, reason=f"bwrap unusable: {bwrap_available()}")

LIMITS = TaskLimits(
    cpu_seconds=20, memory_bytes=512 << 20, processes=32, open_files=64, tmp_bytes=8 << 20, wall_seconds=60
)


@pytest.fixture(autouse=True)
def fork_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATS_SANDBOX_FORK", "1")


def _run(
    store: MemoryBlockStore,
    work: Path,
    body: str,
    *,
    limits: TaskLimits = LIMITS,
    params: dict[str, object] | None = None,
) -> TaskResult:
    code = work.parent / f"code-{abs(hash(body))}"
    code.mkdir(exist_ok=True)
    (code / "probe.py").write_text(body)
    settings = SandboxSettings(mode="bwrap", limits=limits, workdir=str(work))
    spec = TaskSpec(
        "batch",
        str(_unixfs.add_path(code, store).cid),
        "probe:main",
        {"a": str(_unixfs.add_bytes(b"input-a", store))},
        params or {},
        0,
        None,
        settings,
    )
    return run_task(spec, store)


def _out(store: MemoryBlockStore, result: TaskResult, name: str) -> str:
    from cats_runtime.cas import CID, Block

    sink = MemoryBlockStore()
    for cid_bytes, data in result.blocks:
        sink.put(Block.checked(CID.from_bytes(cid_bytes), data))
    assert result.output is not None
    entries = {e.name: e.cid for e in _unixfs.ls(sink, CID.from_bytes(result.output))}
    return b"".join(_unixfs.cat(sink, entries[name])).decode()


def _server(work: Path) -> _sandbox._ForkServer:
    live = [s for k, s in _sandbox._FORK_SERVERS.items() if k[-1] == str(work) and s is not None]
    assert len(live) == 1, _sandbox.fork_server_unavailable
    return live[0]


LEAVE = """
import os, socket
def main(ctx):
    left = []
    for path in ('/leftover', '/dev/leftover', '/dev/shm/leftover', '/tmp/leftover', '/cats/leftover'):
        try:
            with open(path, 'w') as f:
                f.write('from the first call')
            left.append(path)
        except OSError:
            pass
    listener = socket.socket(socket.AF_UNIX)
    listener.bind('\\0cats-fork-server-test')
    listener.listen(1)
    if os.fork() == 0:  # a process meant to outlive the call, holding the socket
        os.execv('/bin/sleep', ['sleep', ctx.params['marker']])
    (ctx.output / 'left').write_text(repr(left))
"""

FIND = """
import os, socket
def main(ctx):
    found = [p for p in ('/leftover', '/dev/leftover', '/dev/shm/leftover', '/tmp/leftover', '/cats/leftover')
             if os.path.exists(p)]
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect('\\0cats-fork-server-test')
        found.append('abstract socket')
    except OSError:
        pass
    pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
    (ctx.output / 'found').write_text(repr(found))
    (ctx.output / 'pids').write_text(repr(pids))
"""


def _sleepers(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in argv:
                found.append(int(entry))
    return found


def test_nothing_of_a_call_reaches_the_next(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    work = tmp_path / "work"
    marker = f"{os.getpid()}.{abs(hash(tmp_path)) % 1000}"
    first = _run(store, work, LEAVE, params={"marker": marker})
    assert first.status == "succeeded", first.log
    # Its private /tmp (and /dev/shm) took the file; the server's shared places did not.
    assert _out(store, first, "left") == repr(["/dev/shm/leftover", "/tmp/leftover"])
    assert _sleepers(marker) == []  # the sleeper died with the call's pid namespace
    server = _server(work)
    second = _run(store, work, FIND)
    assert second.status == "succeeded", second.log
    assert _server(work) is server  # the same warm server ran both calls
    assert _out(store, second, "found") == "[]"
    assert _out(store, second, "pids") == "[1]"  # pid 1 of its own namespace, alone


def test_a_call_has_no_privilege_and_no_view_of_the_work_directory(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    work = tmp_path / "work"
    body = """
import json, os
def main(ctx):
    status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines())
    caps = {k: status[k].strip() for k in ('CapEff', 'CapPrm', 'CapAmb', 'NoNewPrivs')}
    mounts = open('/proc/self/mountinfo').read()
    (ctx.output / 'facts').write_text(json.dumps([caps, os.listdir('/cats/.work'), mounts]))
"""
    result = _run(store, work, body)
    assert result.status == "succeeded", result.log
    caps, work_seen, mounts = json.loads(_out(store, result, "facts"))
    assert caps == {"CapEff": "0" * 16, "CapPrm": "0" * 16, "CapAmb": "0" * 16, "NoNewPrivs": "1"}
    assert work_seen == []  # the mount point is left, empty: the work directory is unmounted
    # /cats/.work is unmounted, or (in a user namespace, where it is locked) covered by an empty
    # read-only tmpfs: either way the call sees nothing there.
    over_work = [line.split()[8] for line in mounts.splitlines() if line.split()[4] == "/cats/.work"]
    assert over_work == [] or over_work[-1] == "tmpfs"
    # Of the work directory, only this call's own task is mounted (its code, inputs, output),
    # besides the covered /cats/.work itself.
    assert {line.split()[4] for line in mounts.splitlines() if str(work) in line.split()[3]} - {
        "/cats/.work"
    } == {
        "/cats/code",
        "/cats/inputs",
        "/cats/output",
    }


def test_the_wall_clock_limit_kills_a_forked_call_and_the_server_goes_on(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    work = tmp_path / "work"
    slow = "import time\ndef main(ctx):\n    time.sleep(30)\n"
    result = _run(store, work, slow, limits=TaskLimits(**{**LIMITS.__dict__, "wall_seconds": 1}))
    assert result.status == "failed"
    assert result.error == "LimitError: the task ran longer than 1 s (wall clock)"
    server = _server(work)
    fine = _run(store, work, "def main(ctx):\n    (ctx.output / 'ok').write_text('ok')\n")
    assert fine.status == "succeeded", fine.log
    assert _server(work) is server


def test_a_dead_server_costs_only_speed(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    work = tmp_path / "work"
    body = "def main(ctx):\n    (ctx.output / 'ok').write_text(ctx.params['n'])\n"
    assert _run(store, work, body, params={"n": "1"}).status == "succeeded"
    server = _server(work)
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    again = _run(store, work, body, params={"n": "2"})
    assert again.status == "succeeded", again.log
    assert _out(store, again, "ok") == "2"
    assert _server(work) is not server  # a new server took over


def test_a_worker_keeps_a_few_servers_not_one_per_work_directory(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    body = "def main(ctx):\n    (ctx.output / 'ok').write_text('ok')\n"
    for i in range(_sandbox._MAX_FORK_SERVERS + 3):
        assert _run(store, tmp_path / f"work{i}", body).status == "succeeded"
    live = [s for s in _sandbox._FORK_SERVERS.values() if s is not None]
    assert len(live) <= _sandbox._MAX_FORK_SERVERS
    # The oldest idle servers went; the newest stays.
    assert str(tmp_path / f"work{_sandbox._MAX_FORK_SERVERS + 2}") in {
        str(k[-1]) for k in _sandbox._FORK_SERVERS
    }
    assert str(tmp_path / "work0") not in {str(k[-1]) for k in _sandbox._FORK_SERVERS}


def _reachable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [path, *path.parents])


_REPO = Path(__file__).resolve().parents[2]
_SITE = [Path(p) for p in sys.path if p.endswith("site-packages")]


def _python_for_others() -> str | None:
    """This interpreter, or the system's of the same version, if another uid can run it."""
    mine = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for exe, prefix in ((sys.executable, Path(sys.base_prefix)), (f"/usr/bin/{mine}", Path("/usr"))):
        if os.path.exists(exe) and _reachable_by_others(prefix) and _reachable_by_others(Path(exe).parent):
            return exe
    return None


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
@pytest.mark.skipif(
    _python_for_others() is None or not all(_reachable_by_others(p) for p in [_REPO, *_SITE]),
    reason="no interpreter, or not the repository or its packages, readable by other uids here",
)
def test_the_fork_server_as_an_unprivileged_user() -> None:
    """As a node run by a normal user runs it: bwrap makes a user namespace, where the server's
    mounts are locked and its capabilities are those of the namespace (this file, re-run)."""
    # Not under pytest's tmp_path: its parents are 0700, closed to the other uid.
    base = Path(tempfile.mkdtemp(prefix="cats-nobody-"))
    try:
        os.chown(base, 65534, 65534)
        base.chmod(0o700)
        _as_nobody(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _as_nobody(base: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base),
        "TMPDIR": str(base),
        "PYTHONPATH": os.pathsep.join([str(_REPO), *map(str, _SITE)]),
    }
    python = _python_for_others()
    assert python is not None
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-m", "pytest"]
    argv += [__file__, "-q", "-p", "no:cacheprovider", f"--basetemp={base / 'pt'}", "-k", "not unprivileged"]
    done = subprocess.run(argv, env=env, cwd=base, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]
