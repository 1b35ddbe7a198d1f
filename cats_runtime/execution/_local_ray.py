"""A warm local Ray per CATs home: started on first use, reused by later runs, stopped when idle.

Starting Ray costs several seconds, so a ``cats run`` that started its own Ray every time spent
most of its wall time waiting for it. Instead the first run on a home starts a small supervisor,
``python -m cats_runtime.execution._local_ray serve --home HOME``, in its own process group
(detached from the terminal and from the process that started it). The supervisor starts an
embedded Ray (every port on 127.0.0.1, token authentication on, its files under the home) and
serves runs over a Unix socket; later runs only connect to it. Runs do not import Ray at all.

Files (``<home>/ray/``, mode 0700): ``state.json`` (0600: pid, process group, socket, Ray's
session and GCS address), ``auth_token`` (0600, Ray's token), ``lock`` (held while a Ray is
being started, so two concurrent runs start one Ray), ``daemon.log`` and Ray's files. When the
home path is too long for Ray's Unix sockets (about 107 bytes with Ray's own suffixes), Ray's
temporary directory is ``/tmp/cats-ray-<uid>-<hash of the home>`` (0700, removed on stop); it
is also the ``TMPDIR`` of Ray's processes and workers.

Protocol (the socket is 0600 in a 0700 directory and the peer's uid is checked): frames of a
4-byte big-endian length and one DAG-CBOR value. A client sends ``{"op": "run", "source": ...,
"tasks": [...]}`` and receives one ``{"result": ...}`` frame per finished task then
``{"done": true}``; ``{"op": "status"}`` and ``{"op": "stop"}`` answer one frame. The client
re-verifies every returned block against its CID before storing it, as the in-process executor
does. No pickle: specs and results are plain values.

Lifetime: the supervisor exits after ``idle_timeout`` seconds without a run (default
:data:`DEFAULT_IDLE_TIMEOUT`, environment ``CATS_RAY_IDLE_TIMEOUT``, ``cats ray start
--idle-timeout``; 0 stops it as soon as its first run ends), on ``cats ray stop`` or SIGTERM, and
when its owner process exits (a node binds the Ray it starts to itself). On the way out it shuts
Ray down and kills whatever is left of its process group (Ray's agents ignore SIGTERM). A state
file whose supervisor is gone (kill -9) is stale: the next start kills what is left of its
process group, removes its files and starts a new Ray.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..cas import BlockStore, dagcbor_decode, dagcbor_encode
from ..errors import ExecutionError, InvalidInputError
from ._ray import SourceDesc, TaskOutcome, collect_outcomes, loopback_ray_env
from ._task import TaskResult, TaskSpec

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "IDLE_TIMEOUT_ENV",
    "LocalRay",
    "LocalRayExecutor",
    "LocalRayInfo",
    "bind_local_ray_to_this_process",
    "idle_timeout_from_env",
]

DEFAULT_IDLE_TIMEOUT: Final = 600.0
"""Seconds a warm local Ray waits for the next run before it stops."""
IDLE_TIMEOUT_ENV: Final = "CATS_RAY_IDLE_TIMEOUT"
_FIRST_RUN_GRACE: Final = 60.0  # a Ray started for a run waits at least this long for that run
_START_TIMEOUT: Final = 300.0  # Ray starts in ~8 s on 2 idle cores, far slower on a loaded machine
_MAX_FRAME: Final = 1 << 30
_SOCKET_LIMIT: Final = 40  # longest temp dir that leaves room for Ray's session and socket names
_MODULE: Final = "cats_runtime.execution._local_ray"

_owned_homes: set[Path] = set()
_spawned: dict[Path, subprocess.Popen[bytes]] = {}


def idle_timeout_from_env() -> float:
    """The idle timeout from ``CATS_RAY_IDLE_TIMEOUT`` (seconds), else the default.

    Raises:
        InvalidInputError: The variable is not a non-negative number.
    """
    raw = os.environ.get(IDLE_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_IDLE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise InvalidInputError(f"expected {IDLE_TIMEOUT_ENV} to be seconds >= 0, found {raw!r}")
    return value


def bind_local_ray_to_this_process(home: Path) -> None:
    """Make a local Ray that this process starts for ``home`` exit when this process exits.

    A node calls this: the Ray it starts is its own, stopped with it (SIGTERM) and gone soon
    after it dies (SIGKILL), never left running without it.
    """
    _owned_homes.add(home.absolute())


@dataclass(frozen=True)
class LocalRayInfo:
    """A running warm local Ray, as its state file and supervisor describe it."""

    home: str
    pid: int
    pgid: int
    socket: str
    temp_dir: str
    session_dir: str
    gcs_address: str
    started: float
    idle_timeout: float
    owner: int | None
    runs: int = 0


# -- frames ----------------------------------------------------------------------------------
def _send(conn: socket.socket, value: Any) -> None:
    data = dagcbor_encode(value)
    conn.sendall(struct.pack(">I", len(data)) + data)


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks: list[bytes] = []
    while n:
        chunk = conn.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("the local Ray connection closed mid-frame")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(conn: socket.socket) -> Any:
    (size,) = struct.unpack(">I", _recv_exact(conn, 4))
    if size > _MAX_FRAME:
        raise ConnectionError(f"expected a frame of at most {_MAX_FRAME} bytes, found {size}")
    return dagcbor_decode(_recv_exact(conn, size))


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and dicts as DAG-CBOR's data model (dicts and lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _rebuild(kind: Any, value: Any) -> Any:
    """The inverse of :func:`_plain` for a declared type (dataclasses, optionals, tuples)."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(kind):
            if arg is not type(None):
                return _rebuild(arg, value)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{k: _rebuild(hints[k], v) for k, v in value.items() if k in hints})
    if origin is tuple:
        args = typing.get_args(kind)
        return tuple(_rebuild(a, v) for a, v in zip(args, value, strict=False))
    if origin is list:
        (arg,) = typing.get_args(kind) or (Any,)
        return [_rebuild(arg, v) for v in value]
    return value


# -- paths and state -------------------------------------------------------------------------
def _ray_dir(home: Path) -> Path:
    path = home.absolute() / "ray"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _temp_dir_for(home: Path) -> Path:
    """Ray's temp dir: ``r`` inside a private (0700) directory, since Ray makes its own 0777."""
    inside = home.absolute() / "ray" / "t" / "r"
    if len(str(inside)) <= _SOCKET_LIMIT:
        return inside
    digest = hashlib.sha256(str(home.absolute()).encode()).hexdigest()[:16]
    return Path("/tmp") / f"cats-ray-{os.getuid()}-{digest}" / "r"  # noqa: S108  (0700, owner checked)


def _make_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.lstat()
    # /tmp is shared: refuse a directory someone else made (or a symlink) in our name.
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid():
        raise ExecutionError(f"expected {path} to be a directory of this user, found something else")
    os.chmod(path, 0o700)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


def _read_state(ray_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((ray_dir / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("pid"), int) else None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state, ppid, pgrp, ...)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    """A running process (a zombie, dead but not yet reaped, does not count)."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    """Live pids whose process group is ``pgid`` (from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _uses(pid: int, marker: str) -> bool:
    """True when ``pid`` names ``marker`` on its command line or has a file open under it.

    Ray's agents rename themselves (``ray::DashboardAgent``), so the command line is not enough;
    but every Ray process writes its logs into the session directory under the temp dir.
    """
    if marker in _cmdline(pid):
        return True
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(marker):
                return True
    return False


def _kill_group(pgid: int, marker: str) -> bool:
    """SIGKILL what is left of a dead supervisor's process group, if it is really ours.

    A process-group id is a pid and pids are reused: the group is killed only when one of its
    members uses ``marker`` (the supervisor's Ray temp dir, see :func:`_uses`).
    """
    members = [p for p in _group_members(pgid) if p != os.getpid()]
    if not members or pgid == os.getpgid(0):
        return False
    if not any(_uses(p, marker) for p in members):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    return True


def _remove_when_gone(pgid: int, path: Path, wait: float = 10.0) -> None:
    """Remove a Ray temp dir once the killed processes of group ``pgid`` (but us) have exited.

    A process being killed may still create a log file while ``rmtree`` runs: the directory would
    then survive as a ``/tmp/cats-ray-*`` leftover. Waiting for the group, then retrying, avoids it.
    ``wait=0`` when the group is not ours (a reused pgid): nothing of ours is left to wait for.
    """
    deadline = time.monotonic() + wait
    while [p for p in _group_members(pgid) if p != os.getpid()] and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return


def _connect(path: str, timeout: float) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        raise
    return conn


def _ask(path: str, request: dict[str, Any], timeout: float = 10.0) -> Any:
    with _connect(path, timeout) as conn:
        _send(conn, request)
        return _recv(conn)


# -- the client ------------------------------------------------------------------------------
class LocalRay:
    """The warm local Ray of one CATs home: find it, start it, stop it.

    Args:
        home: The CATs home.
    """

    def __init__(self, home: Path) -> None:
        self.home = home.absolute()

    @property
    def ray_dir(self) -> Path:
        """``<home>/ray`` (created 0700 by the first start, not by a status or a stop)."""
        return self.home / "ray"

    def status(self) -> LocalRayInfo | None:
        """The running Ray, or None when none answers (a stale state file is left for :meth:`start`)."""
        doc = _read_state(self.ray_dir)
        if doc is None or not doc.get("ready") or not _pid_alive(doc["pid"]):
            return None
        try:
            answer = _ask(str(doc["socket"]), {"op": "status"})
        except (OSError, ValueError, struct.error):
            return None
        if not isinstance(answer, dict) or answer.get("pid") != doc["pid"]:
            return None
        return _rebuild(LocalRayInfo, answer)  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        fd = os.open(_ray_dir(self.home) / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def start(self, *, idle_timeout: float | None = None) -> tuple[LocalRayInfo, bool]:
        """Reuse the running Ray or start one; returns its description and whether it is new.

        Concurrent callers (two ``cats run`` on one home) serialize on ``<home>/ray/lock``: the
        second finds the Ray the first started.

        Raises:
            ExecutionError: Ray did not come up (the message ends with its log's last line).
        """
        timeout = idle_timeout_from_env() if idle_timeout is None else idle_timeout
        with self._lock():
            info = self.status()
            if info is not None:
                return info, False
            self._clean_stale()
            try:
                return self._spawn(timeout), True
            except ExecutionError:
                # Ray gives its raylet a fixed 30 s to come up; a machine loaded by other work can
                # miss that once. A second attempt, after cleaning up the first, usually makes it.
                self._clean_stale()
                return self._spawn(timeout), True

    def clean_stale(self) -> None:
        """Remove what a dead supervisor left (its processes, socket, files); a live one stays."""
        if not self.ray_dir.is_dir():
            return  # no Ray was ever started for this home
        with self._lock():
            if self.status() is None:
                self._clean_stale()

    def _clean_stale(self) -> None:
        doc = _read_state(self.ray_dir)
        if doc is None:
            return
        pid, pgid, temp = doc["pid"], int(doc.get("pgid", doc["pid"])), str(doc.get("temp_dir", ""))
        if _pid_alive(pid) and _MODULE in _cmdline(pid):
            # Alive but not answering: wedged. It is ours (the command line says so): end it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if temp:
            killed = _kill_group(pgid, temp)
            _remove_when_gone(pgid, Path(temp).parent, wait=10.0 if killed else 0.0)
        (self.ray_dir / "state.json").unlink(missing_ok=True)

    def _spawn(self, idle_timeout: float) -> LocalRayInfo:
        ray_dir = self.ray_dir
        owner = os.getpid() if self.home in _owned_homes else None
        # ``-c`` rather than ``-m``: the package imports this module, and runpy warns about that.
        launcher = f"import sys; from {_MODULE} import main; sys.exit(main(sys.argv[1:]))"
        args = [sys.executable, "-c", launcher, "serve", "--home", str(self.home)]
        args += ["--idle-timeout", repr(idle_timeout)]
        if owner is not None:
            args += ["--owner", str(owner)]
        # HOME moves Ray's ~/.ray into the home's ray directory.
        env = {**os.environ, "HOME": str(ray_dir)}
        with open(ray_dir / "daemon.log", "ab") as log:
            proc = subprocess.Popen(  # noqa: S603  (our interpreter and module; no shell)
                args,
                cwd=ray_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _spawned[self.home] = proc  # keeps the handle (and so the right to reap it) for stop()
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise ExecutionError(
                    f"the local Ray for {self.home} exited with {proc.returncode} while starting: "
                    f"{self._last_log_line()}"
                )
            doc = _read_state(ray_dir)
            if doc is not None and doc.get("pid") == proc.pid and doc.get("ready"):
                info = self.status()
                if info is not None:
                    return info
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                raise ExecutionError(
                    f"the local Ray for {self.home} did not start within {_START_TIMEOUT:.0f} s: "
                    f"{self._last_log_line()}"
                )
            time.sleep(0.1)

    def _last_log_line(self) -> str:
        try:
            lines = (self.ray_dir / "daemon.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1][:300] if lines else "no log"

    def stop(self, timeout: float = 120.0) -> LocalRayInfo | None:
        """Stop the running Ray and wait until its whole process group is gone.

        Returns:
            What was stopped, or None when no Ray was running (stale leftovers are cleaned).
        """
        info = self.status()
        if info is None:
            self.clean_stale()
            return None
        with contextlib.suppress(OSError, ValueError, struct.error):
            _ask(info.socket, {"op": "stop"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = _spawned.get(self.home)
            if proc is not None and proc.pid == info.pid:
                proc.poll()  # reap our own child, else it lingers as a zombie
            if not _pid_alive(info.pid) and not _group_members(info.pgid):
                break
            time.sleep(0.1)
        else:
            _kill_group(info.pgid, info.temp_dir)
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)
        self.clean_stale()
        return info

    def stop_if_owned(self) -> None:
        """Stop the running Ray if this process started it bound to itself (a node's own Ray)."""
        info = self.status()
        if info is not None and info.owner == os.getpid():
            self.stop()


class LocalRayExecutor:
    """Runs task specs on the home's warm local Ray (started on first use).

    Args:
        home: The CATs home whose Ray runs the tasks.
        source: Where the workers read code and input blocks.
    """

    def __init__(self, home: Path, source: SourceDesc) -> None:
        self.ray = LocalRay(home)
        self.source = source
        self.cluster = "local"

    def run(
        self,
        tasks: Sequence[TaskSpec],
        sink: BlockStore,
        *,
        on_done: Callable[[TaskOutcome], None] | None = None,
    ) -> list[TaskOutcome]:
        """Run every task; outcomes in task order, blocks verified and stored in ``sink``."""
        if not tasks:
            return []
        request = {"op": "run", "source": _plain(self.source), "tasks": _plain(list(tasks))}
        for attempt in range(2):
            info, _ = self.ray.start()
            try:
                conn = _connect(info.socket, timeout=30.0)
            except OSError as exc:
                if attempt == 0:
                    continue  # it stopped between its status answer and our connect: start it again
                raise ExecutionError(f"cannot reach the local Ray of {self.ray.home}: {exc}") from exc
            with conn:
                conn.settimeout(None)  # tasks run as long as they run; Ctrl-C closes the socket
                first = self._accepted(conn, request)
                if first is None and attempt == 0:
                    # The supervisor reached its idle timeout with our connection still in its
                    # listen queue: it never read the request, so nothing ran. Start it again.
                    continue
                if first is None:
                    raise ExecutionError(
                        f"the local Ray of {self.ray.home} closed the connection before accepting the run"
                    )
                return collect_outcomes(self._results(conn, first), tasks, sink, on_done)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _accepted(conn: socket.socket, request: dict[str, Any]) -> dict[str, Any] | None:
        """Send the run; the supervisor's first frame, or None when it went away without one.

        A supervisor acknowledges a run with ``{"accepted": true}`` before starting any task, so a
        connection lost before that frame is safe to retry. (A supervisor started by an older
        version sends results straight away: that first frame is handed on as it is.)
        """
        try:
            _send(conn, request)
            frame = _recv(conn)
        except (OSError, struct.error):
            return None
        if not isinstance(frame, dict):
            raise ExecutionError("expected a frame of the local Ray protocol, found something else")
        return frame

    def _results(self, conn: socket.socket, first: dict[str, Any]) -> Iterator[TaskResult]:
        frame: Any = first
        while True:
            if frame.get("accepted") is True:
                pass
            elif "result" in frame:
                yield _rebuild(TaskResult, frame["result"])
            elif frame.get("done"):
                return
            else:
                raise ExecutionError(f"the local Ray failed the run: {frame.get('error', frame)}")
            try:
                frame = _recv(conn)
            except (OSError, struct.error) as exc:
                raise ExecutionError(f"the local Ray of {self.ray.home} went away mid-run: {exc}") from exc
            if not isinstance(frame, dict):
                raise ExecutionError("expected a frame of the local Ray protocol, found something else")


# -- the supervisor --------------------------------------------------------------------------
class _Supervisor:
    def __init__(self, home: Path, idle_timeout: float, owner: int | None) -> None:
        self.home = home.absolute()
        self.ray_dir = _ray_dir(self.home)
        self.temp = _temp_dir_for(self.home)
        self.idle_timeout = idle_timeout
        self.owner = owner
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.active = 0
        self.runs = 0
        self.last = time.monotonic()
        self.state: dict[str, Any] = {}

    def _token(self) -> Path:
        path = self.ray_dir / "auth_token"
        if not path.exists():
            import secrets

            _write_private(path, secrets.token_hex(32))
        return path

    def serve(self) -> int:
        _make_private_dir(self.temp.parent)
        _make_private_dir(self.temp)
        sock_path = self.temp / "cats.sock"
        self.state = {
            "home": str(self.home),
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "socket": str(sock_path),
            "temp_dir": str(self.temp),
            "session_dir": "",
            "gcs_address": "",
            "started": time.time(),
            "idle_timeout": self.idle_timeout,
            "owner": self.owner,
            "ready": False,
        }
        # Written before Ray starts: a kill -9 during start-up still leaves a record of the
        # process group and temp dir to clean up.
        _write_private(self.ray_dir / "state.json", json.dumps(self.state))
        os.environ.update(loopback_ray_env(self._token(), self.temp))
        # Python's temporary files of everything this Ray runs (the pymp-* sockets of Ray's
        # agents, the workers' task directories) go under the directory removed at stop: the
        # agents are SIGKILLed there, and what a killed process made in /tmp would stay.
        scratch = self.temp.parent / "t"
        _make_private_dir(scratch)
        os.environ["TMPDIR"] = str(scratch)
        tempfile.tempdir = None  # gettempdir() caches its first answer: make it look again
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._start_ray()
            # Ray's core worker installs its own fatal-signal handlers (the "*** SIGTERM received"
            # dump): ours come back on top so a stop is a stop, not a crash report.
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self._on_signal)
            sock_path.unlink(missing_ok=True)
            old = os.umask(0o177)
            try:
                server.bind(str(sock_path))
            finally:
                os.umask(old)
            server.listen(16)
            server.settimeout(0.5)
            self.state["ready"] = True
            _write_private(self.ray_dir / "state.json", json.dumps(self.state))
            self.last = time.monotonic()
            self._loop(server)
        finally:
            server.close()
            self._shutdown()
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping.set()

    def _start_ray(self) -> None:
        import ray

        from ._ray import ensure_ray

        ensure_ray(None, temp_dir=self.temp)
        context = ray.get_runtime_context()
        self.state["gcs_address"] = str(context.gcs_address)
        node = getattr(ray._private.worker, "_global_node", None)
        self.state["session_dir"] = str(node.get_session_dir_path()) if node is not None else ""

    def _idle(self) -> bool:
        with self.lock:
            if self.active:
                return False
            limit = self.idle_timeout if self.runs else max(self.idle_timeout, _FIRST_RUN_GRACE)
            return time.monotonic() - self.last >= limit

    def _loop(self, server: socket.socket) -> None:
        while not self.stopping.is_set():
            if self.owner is not None and not _pid_alive(self.owner):
                break
            if self._idle():
                break
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _peer_is_us(conn: socket.socket) -> bool:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        return bool(uid == os.getuid())

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                if not self._peer_is_us(conn):
                    return  # the socket's mode already stops other users; this is the second lock
                conn.settimeout(30.0)
                request = _recv(conn)
                conn.settimeout(None)
                op = request.get("op") if isinstance(request, dict) else None
                if op == "status":
                    _send(conn, {**_status_fields(self.state), "runs": self.runs})
                elif op == "stop":
                    _send(conn, {"stopping": True})
                    self.stopping.set()
                elif op == "run":
                    self._run(conn, request)
                else:
                    _send(conn, {"error": f"expected op run|status|stop, found {op!r}"})
            except (OSError, ValueError, struct.error):
                return  # the client went away or spoke nonsense: nothing to answer

    def _run(self, conn: socket.socket, request: dict[str, Any]) -> None:
        from ._ray import RayExecutor

        with self.lock:
            self.active += 1
            self.runs += 1
        try:
            _send(conn, {"accepted": True})  # from here the client must not retry: tasks may run
            source = _rebuild(SourceDesc, request["source"])
            tasks = [_rebuild(TaskSpec, t) for t in request["tasks"]]
            results = RayExecutor(source).results(tasks)
            try:
                for result in results:
                    _send(conn, {"result": _plain(result)})
            finally:
                results.close()  # a client that hung up gets its tasks cancelled
            _send(conn, {"done": True})
        except OSError:
            pass
        except Exception as exc:
            with contextlib.suppress(OSError, ValueError):
                _send(conn, {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            with self.lock:
                self.active -= 1
                self.last = time.monotonic()

    def _shutdown(self) -> None:
        doc = _read_state(self.ray_dir)
        if doc is not None and doc.get("pid") == os.getpid():
            (self.ray_dir / "state.json").unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()
        # Ray's dashboard and runtime-env agents may outlive the shutdown (they ignore SIGTERM):
        # everything else in this process group is ours to end.
        me = os.getpid()
        for pid in _group_members(os.getpgid(0)):
            if pid != me:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        _remove_when_gone(os.getpgid(0), self.temp.parent)


def _status_fields(state: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(LocalRayInfo)}
    return {k: v for k, v in state.items() if k in names}


def main(argv: list[str] | None = None) -> int:
    """``python -m cats_runtime.execution._local_ray serve --home HOME [--idle-timeout S] [--owner PID]``."""
    parser = argparse.ArgumentParser(prog=_MODULE)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--home", required=True, type=Path)
    serve.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT)
    serve.add_argument("--owner", type=int, default=None)
    args = parser.parse_args(argv)
    return _Supervisor(args.home, args.idle_timeout, args.owner).serve()


if __name__ == "__main__":
    sys.exit(main())
