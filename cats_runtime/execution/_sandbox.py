"""Run one call of user code in a fresh, confined child process.

Every call of a Function (the batch call, or one datum in map mode) runs in a new child process,
never in the interpreter of a long-lived Ray worker. The worker materializes code and inputs from
verified blocks into a run directory private to the task (``<home>/work/task-*``, mode 0700),
then calls :func:`run_call`, which starts ``python -I -S -B _launcher.py`` in the chosen mode:

``bwrap`` (the default where it works)
    bubblewrap: new mount, pid, ipc, uts and network namespaces (and a user namespace when the
    node is not root; a root node instead has the launcher drop to a dedicated unprivileged uid
    before user code is imported, so that the process limit applies and no capability is kept).
    Inside, only ``/usr``, ``/lib*``, the interpreter's prefix and the given ``python_path`` are
    visible (read-only), code at ``/cats/code`` and inputs at ``/cats/inputs`` (read-only), the
    output at ``/cats/output`` and a size-capped private tmpfs ``/tmp`` are the only writable
    places. Nothing of the node's home (blocks, catalog, keys, tokens, allow-list, runs) or of
    other tasks exists in that mount namespace. ``--clearenv``: no ``CATS_*``, ``RAY_*`` or home
    path. The network namespace has only a down loopback unless the Function declares
    ``network: true`` (and the node allows it).
``uid`` (named weaker mode, for hosts without user namespaces; needs a root node)
    The launcher runs directly as a dedicated unprivileged uid with a clean environment and the
    same rlimits. It cannot read the node's keys (0600) or write anything of the node's, but sees
    the host's world-readable files and the network.
``none`` (named: trusted, single-user local use)
    A fresh child process of the node's uid with a clean environment and the rlimits; no
    isolation of the file system or network.

Resource limits (:class:`TaskLimits`) are set in the child with ``setrlimit`` before user code is
imported; the output's total size and file count are checked again after the call, and the
parent kills the child at the wall-clock limit. A limit hit fails that task with a
``LimitError: ...`` reason; the node keeps serving.

Interface for a built Environment (``execution/_environment.py``): pass ``python`` (the
interpreter to run; default the runtime's own, resolved) and ``python_path`` (its site-packages
directories). The sandbox binds the interpreter's install prefix (the directory above its
``bin/``) and every ``python_path`` entry read-only, and puts only the ``python_path`` entries on
the child's ``sys.path`` (``-I -S``: no user or site directories, so never the node's own
site-packages). ``extra_ro_paths`` are bound read-only without being put on ``sys.path``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from ..errors import ExecutionError, InvalidInputError

__all__ = [
    "SANDBOX_CHOICES",
    "CallResult",
    "SandboxCall",
    "SandboxMode",
    "SandboxPolicy",
    "SandboxSettings",
    "TaskLimits",
    "bwrap_available",
    "clean_workdir",
    "default_workdir",
    "make_task_dir",
    "resolve_mode",
    "run_call",
]

SandboxMode = Literal["bwrap", "uid", "none"]
"""What confines a task: bubblewrap namespaces, a dedicated uid only, or nothing but a fresh process."""
SANDBOX_CHOICES: Final = ("auto", *get_args(SandboxMode))
"""What an operator may ask for; ``auto`` is ``bwrap`` where it works, else ``none`` (flagged)."""

MiB: Final = 1 << 20
_LOG_CAP: Final = 1 * MiB  # a task's log kept for the Invoice; the rest is counted and dropped
_TASK_PREFIX: Final = "task-"
_UID_BASE: Final = 200_000  # dedicated task uids: far above any distribution's system or user uids
_UID_SPAN: Final = 50_000
_HERE: Final = Path(__file__).resolve().parent
_LAUNCHER: Final = _HERE / "_launcher.py"
_CONTEXT: Final = _HERE / "_context.py"


@dataclass(frozen=True)
class TaskLimits:
    """Per-task resource limits (each a hard rlimit or a check; all node-configurable).

    Attributes:
        cpu_seconds: CPU time of the task's process (``RLIMIT_CPU``).
        memory_bytes: Address space of each process (``RLIMIT_AS``).
        processes: Processes and threads of the task's uid (``RLIMIT_NPROC``; enforced in ``bwrap``
            and ``uid`` modes, where the task has a uid of its own or a user namespace).
        open_files: Open file descriptors (``RLIMIT_NOFILE``).
        output_bytes: Total bytes of the output (each file is capped by ``RLIMIT_FSIZE``, the
            total is checked after the call).
        output_files: Entries (files, directories, symlinks) of the output.
        input_bytes: Bytes materialized for the task (code, inputs, datum): declared sizes are
            checked before writing, and writing stops at the budget whatever the DAG claims.
        tmp_bytes: Size of the private tmpfs ``/tmp`` (``bwrap`` mode).
        wall_seconds: Wall-clock time before the child is killed.
    """

    cpu_seconds: int = 600
    memory_bytes: int = 4096 * MiB
    processes: int = 256
    open_files: int = 1024
    output_bytes: int = 1024 * MiB
    output_files: int = 100_000
    input_bytes: int = 4096 * MiB
    tmp_bytes: int = 256 * MiB
    wall_seconds: int = 1800

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(f"expected a task limit {f.name} >= 1, found {value!r}")

    @classmethod
    def parse(cls, text: str, base: TaskLimits | None = None) -> TaskLimits:
        """``name=value,...`` over ``base`` (sizes accept K, M, G suffixes: ``memory_bytes=512M``)."""
        values = dataclasses.asdict(base or cls())
        for item in filter(None, (p.strip() for p in text.split(","))):
            name, sep, raw = item.partition("=")
            if not sep or name not in values:
                raise InvalidInputError(
                    f"expected task limits name=value with a name among {sorted(values)}, found {item!r}"
                )
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(raw[-1:].upper(), 1)
            digits = raw[:-1] if scale != 1 else raw
            if not digits.isdigit():
                raise InvalidInputError(f"expected a whole number for task limit {name}, found {raw!r}")
            values[name] = int(digits) * scale
        return cls(**values)


@dataclass(frozen=True)
class SandboxPolicy:
    """What a node's operator chose: the mode asked for, the limits, whether networked code may run.

    Attributes:
        mode: ``auto`` (``bwrap`` where it works, else ``none`` and the node refuses Orders from
            other organizations), ``bwrap``, ``uid`` or ``none`` (both named weaker modes).
        limits: Per-task limits.
        allow_network: Whether Functions declaring ``network: true`` may run (with network).
    """

    mode: str = "auto"
    limits: TaskLimits = dataclasses.field(default_factory=TaskLimits)
    allow_network: bool = True

    def __post_init__(self) -> None:
        if self.mode not in SANDBOX_CHOICES:
            raise InvalidInputError(
                f"expected a sandbox mode among {', '.join(SANDBOX_CHOICES)}, found {self.mode!r}"
            )

    def refusal(self) -> str | None:
        """Why this node must refuse Orders from other organizations (None: it need not).

        ``auto`` falling back to ``none`` means untrusted code would run unconfined: refused
        until the operator names a weaker mode on purpose.
        """
        if self.mode != "auto":
            return None
        why = bwrap_available()
        if why is None:
            return None
        return (
            f"this node cannot sandbox Functions ({why}); it runs only its operator's Orders "
            "unless started with --sandbox=uid or --sandbox=none"
        )


@dataclass(frozen=True)
class SandboxSettings:
    """How tasks of one run are confined (plain data: it travels inside each task spec).

    Attributes:
        mode: A resolved :data:`SandboxMode` (the driver resolves ``auto`` once per run).
        limits: The per-task limits.
        network: Whether the task may use the network (the Function declared it, the node allowed it).
        workdir: Where task directories are made (``<home>/work``); None: a private directory
            under the system temp dir, for workers that do not share the node's disk.
        python: The interpreter to run (None: this runtime's own).
        python_path: Directories put on the child's ``sys.path`` and bound read-only.
        extra_ro_paths: More directories bound read-only (not on ``sys.path``).
    """

    mode: SandboxMode = "none"
    limits: TaskLimits = dataclasses.field(default_factory=TaskLimits)
    network: bool = False
    workdir: str | None = None
    python: str | None = None
    python_path: tuple[str, ...] = ()
    extra_ro_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in get_args(SandboxMode):
            raise InvalidInputError(f"expected a sandbox mode bwrap|uid|none, found {self.mode!r}")

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SandboxSettings:
        """The inverse of ``dataclasses.asdict`` (how task specs travel to a Ray Job)."""
        return cls(
            mode=value["mode"],
            limits=TaskLimits(**value["limits"]),
            network=bool(value["network"]),
            workdir=value["workdir"],
            python=value["python"],
            python_path=tuple(value["python_path"]),
            extra_ro_paths=tuple(value["extra_ro_paths"]),
        )


@dataclass(frozen=True)
class SandboxCall:
    """One call of user code, as laid out in a task directory by the caller.

    Attributes:
        key: The task's key (names the function's logger).
        task_dir: The task's private directory: ``code/``, ``inputs/`` and ``output/`` inside.
        package: The synthetic package the code directory is imported as.
        entrypoint: ``module:callable``.
        inputs: Input name -> path relative to ``task_dir/inputs``.
        datum: ``(input, name, path relative to inputs, cid)`` in map mode.
        params: The Order's params.
        seed: The Order's seed.
    """

    key: str
    task_dir: Path
    package: str
    entrypoint: str
    inputs: Mapping[str, str]
    datum: tuple[str, str, str, str] | None
    params: Mapping[str, Any]
    seed: int


@dataclass(frozen=True)
class CallResult:
    """What came back: ``error`` is None when the call returned and the output is within limits."""

    error: str | None
    log: str
    mode: SandboxMode


# -- mode detection ----------------------------------------------------------------------------
_probe_lock = threading.Lock()
_probe: dict[bool, str | None] = {}


def _is_root() -> bool:
    return os.geteuid() == 0


def _ro_system() -> list[str]:
    args: list[str] = []
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]  # merged /usr: keep the link, not a copy
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _namespace_args(network: bool) -> list[str]:
    if _is_root():
        # A root node would map the task to uid 0 inside a user namespace, where RLIMIT_NPROC
        # does not apply; instead no user namespace, every capability dropped except the two the
        # launcher needs to become the task's own uid (after which it has none at all).
        args = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return args if network else [*args, "--unshare-net"]
    return ["--unshare-all", "--share-net"] if network else ["--unshare-all"]


def bwrap_available(network: bool = False) -> str | None:
    """None when bubblewrap really runs a sandbox here (tried once per process), else why not."""
    with _probe_lock:
        if network not in _probe:
            _probe[network] = _try_bwrap(network)
        return _probe[network]


def _try_bwrap(network: bool) -> str | None:
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    cmd = [exe, *_namespace_args(network), "--die-with-parent", *_ro_system(), "--proc", "/proc"]
    cmd += [
        "--dev",
        "/dev",
        "--tmpfs",
        _SANDBOX_TMP,
        "--",
        "/bin/true" if os.path.exists("/bin/true") else "true",
    ]
    try:
        # A fixed argv (no shell, nothing from a record): the only way to know is to try.
        done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not start: {exc}"
    if done.returncode != 0:
        first = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"bwrap cannot create namespaces here: {first[0] if first else f'exit {done.returncode}'}"
    return None


def resolve_mode(requested: str, *, network: bool = False) -> tuple[SandboxMode, str | None]:
    """The mode to run in and, for ``auto`` falling back to ``none``, the reason it fell back.

    Raises:
        InvalidInputError: an unknown mode, or ``uid`` on a node that is not root.
        ExecutionError: ``bwrap`` asked for explicitly where it cannot run.
    """
    if requested not in SANDBOX_CHOICES:
        raise InvalidInputError(
            f"expected a sandbox mode among {', '.join(SANDBOX_CHOICES)}, found {requested!r}"
        )
    if requested == "uid" and not _is_root():
        raise InvalidInputError(
            "expected a root node for --sandbox=uid (it switches to task uids), found uid != 0"
        )
    if requested in ("bwrap", "auto"):
        why = bwrap_available(network)
        if why is None:
            return "bwrap", None
        if requested == "bwrap":
            raise ExecutionError(f"sandbox mode bwrap is unavailable: {why}")
        return "none", why
    return requested, None  # type: ignore[return-value]


# -- task directories --------------------------------------------------------------------------
def default_workdir() -> Path:
    """Where a worker without the node's disk makes task directories: private to this uid."""
    root = Path(tempfile.gettempdir()) / f"cats-work-{os.geteuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise ExecutionError(
            f"expected {root} to be a directory private to uid {os.geteuid()}, found otherwise"
        )
    return root


def make_task_dir(workdir: Path | None) -> Path:
    """A fresh task directory (mode 0700) named after this process, so cleanup knows its owner."""
    root = workdir if workdir is not None else default_workdir()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{_TASK_PREFIX}{os.getpid()}-", dir=root))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_workdir(workdir: Path) -> int:
    """Remove task directories left by processes that are gone (a crash, a kill -9); returns how many.

    A directory whose creating process still runs is a live task of a concurrent run: kept.
    """
    from ._materialize import remove_tree

    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(workdir):
            if not entry.name.startswith(_TASK_PREFIX):
                continue
            pid_text = entry.name[len(_TASK_PREFIX) :].split("-", 1)[0]
            if pid_text.isdigit() and _pid_alive(int(pid_text)) and int(pid_text) != 0:
                continue
            remove_tree(Path(entry.path))
            removed += 1
    return removed


# -- running a call ----------------------------------------------------------------------------
def _task_uid() -> int:
    # One uid per worker process: concurrent tasks run in different workers, so they do not
    # share a process count; the uid owns nothing on the host but the task's output directory.
    return _UID_BASE + os.getpid() % _UID_SPAN


def _interpreter(settings: SandboxSettings) -> tuple[str, str]:
    """The interpreter's real path and its install prefix (what must be visible to run it)."""
    exe = os.path.realpath(settings.python or sys.executable)
    if settings.python is None:
        return exe, os.path.realpath(sys.base_prefix)
    return exe, str(Path(exe).parent.parent)


def _request(call: SandboxCall, settings: SandboxSettings, root: str, uid: int | None) -> dict[str, Any]:
    inputs = f"{root}/inputs"
    datum = None
    if call.datum is not None:
        d_input, d_name, d_path, d_cid = call.datum
        datum = {"input": d_input, "name": d_name, "path": f"{inputs}/{d_path}", "cid": d_cid}
    return {
        "key": call.key,
        "limits": dataclasses.asdict(settings.limits),
        "uid": uid,
        "python_path": list(settings.python_path),
        "context": f"{root}/lib/_context.py" if root == "/cats" else str(_CONTEXT),
        "code": f"{root}/code",
        "package": call.package,
        "entrypoint": call.entrypoint,
        "inputs": {name: f"{inputs}/{rel}" for name, rel in call.inputs.items()},
        "datum": datum,
        "output": f"{root}/output",
        "params": dict(call.params),
        "seed": call.seed,
    }


_SANDBOX_TMP: Final = "/tmp"  # noqa: S108 -- the sandbox's own private tmpfs, not the host's /tmp
_ENV: Final = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HOME": _SANDBOX_TMP,
    "TMPDIR": _SANDBOX_TMP,
}
_NET_FILES: Final = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
)


def _read_only_binds(settings: SandboxSettings, prefix: str) -> list[str]:
    """The host paths a sandbox sees read-only (besides the system's): interpreter, environment."""
    ro = [prefix, *settings.python_path, *settings.extra_ro_paths]
    if settings.network:
        ro += [p for p in _NET_FILES if os.path.exists(p)]
    return list(dict.fromkeys(ro))


def _bwrap_command(call: SandboxCall, settings: SandboxSettings, exe: str, prefix: str, fd: int) -> list[str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ExecutionError("sandbox mode bwrap is unavailable: bubblewrap (bwrap) is not installed")
    task = str(call.task_dir)
    cmd = [bwrap, *_namespace_args(settings.network), "--die-with-parent", "--new-session", "--clearenv"]
    for name, value in _ENV.items():
        cmd += ["--setenv", name, value]
    cmd += _ro_system()
    # The private /tmp first: a bind below /tmp (a python_path there) must land on top of it.
    cmd += ["--perms", "1777", "--size", str(settings.limits.tmp_bytes), "--tmpfs", _SANDBOX_TMP]
    ro = _read_only_binds(settings, prefix)
    # bwrap makes missing parents of a mount point 0700; the task uid must be able to pass them.
    cmd += _parents([*ro, "/cats/lib/_launcher.py"])
    for path in ro:
        cmd += ["--ro-bind", path, path]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--ro-bind", f"{task}/code", "/cats/code", "--ro-bind", f"{task}/inputs", "/cats/inputs"]
    cmd += ["--bind", f"{task}/output", "/cats/output"]
    cmd += [
        "--ro-bind",
        str(_LAUNCHER),
        "/cats/lib/_launcher.py",
        "--ro-bind",
        str(_CONTEXT),
        "/cats/lib/_context.py",
    ]
    cmd += ["--ro-bind", f"{task}/request.json", "/cats/request.json", "--chdir", _SANDBOX_TMP]
    return [*cmd, "--", exe, "-I", "-S", "-B", "/cats/lib/_launcher.py", "/cats/request.json", str(fd)]


def _parents(paths: list[str]) -> list[str]:
    made: set[str] = set()
    args: list[str] = []
    for path in paths:
        parts = Path(path).parts[1:-1]
        for i in range(1, len(parts) + 1):
            parent = "/" + "/".join(parts[:i])
            if parent not in made and parent not in ("/usr", "/lib", "/lib64", "/bin", "/sbin"):
                made.add(parent)
                args += ["--perms", "0755", "--dir", parent]
    return args


def _drain(stream: Any, out: list[bytes]) -> None:
    kept = 0
    dropped = 0
    for chunk in iter(lambda: stream.read(65536), b""):
        room = _LOG_CAP - kept
        if room > 0:
            out.append(chunk[:room])
            kept += min(room, len(chunk))
        dropped += max(0, len(chunk) - max(room, 0))
    if dropped:
        out.append(f"\n[log cut: {dropped} more bytes dropped at the {_LOG_CAP}-byte cap]\n".encode())


def _signal_reason(sig: int, limits: TaskLimits) -> str:
    if sig == signal.SIGXCPU:
        return f"LimitError: the task used more than {limits.cpu_seconds} s of CPU time"
    if sig == signal.SIGXFSZ:
        return (
            f"LimitError: a file under the output grew past the output budget of {limits.output_bytes} bytes"
        )
    if sig == signal.SIGKILL:
        return (
            "LimitError: the task was killed (SIGKILL) at its CPU time limit of "
            f"{limits.cpu_seconds} s, or by the kernel for lack of memory"
        )
    name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
    return f"ExecutionError: the task died of signal {name}"


def _check_output(output: Path, limits: TaskLimits) -> str | None:
    total = 0
    count = 0
    for root, dirs, files in os.walk(output):
        for name in dirs + files:
            count += 1
            info = os.lstat(os.path.join(root, name))
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode) or stat.S_ISLNK(info.st_mode)):
                return (
                    "InvalidInputError: expected only files, directories and symlinks in the output, "
                    f"found {name!r}"
                )
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
        if count > limits.output_files:
            return f"LimitError: the output holds more than {limits.output_files} entries"
        if total > limits.output_bytes:
            return f"LimitError: the output holds more than the output budget of {limits.output_bytes} bytes"
    return None


def _own_output(output: Path, uid: int) -> None:
    os.chown(output, uid, uid)
    output.chmod(0o700)


def _reclaim_output(output: Path) -> None:
    # Written by the task's uid: give the tree back to the node (and drop the task uid's access).
    me = os.geteuid()
    for root, dirs, files in os.walk(output):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                os.lchown(os.path.join(root, name), me, me)
    with contextlib.suppress(OSError):
        os.chown(output, me, me)


# -- the fork server (bwrap mode) ------------------------------------------------------------
# One warm sandboxed interpreter per (worker process, interpreter, environment, network, work
# directory): it forks every call instead of starting Python again (see _launcher._fork_server
# for what each call gets). Where it cannot run, calls start a fresh bwrap each, as before.
_FORK_SERVERS: OrderedDict[tuple[object, ...], _ForkServer | None] = OrderedDict()
_FORK_LOCK = threading.Lock()
_FORK_START_TIMEOUT: Final = 30.0
_MAX_FORK_SERVERS: Final = 4
fork_server_unavailable: str | None = None
"""Why the last fork server could not start (tasks then start a fresh bwrap each), for diagnostics."""
_STATUS_GRACE: Final = 15  # seconds past the wall-clock limit before the server itself is killed


@dataclass
class _ForkServer:
    proc: subprocess.Popen[bytes]
    control: socket.socket
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    busy: int = 0  # calls in flight (changed under _FORK_LOCK): a busy server is never evicted

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.control.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def _fork_server_command(
    settings: SandboxSettings, exe: str, prefix: str, workdir: Path, fd: int
) -> list[str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ExecutionError("sandbox mode bwrap is unavailable: bubblewrap (bwrap) is not installed")
    cmd = [bwrap, *_namespace_args(settings.network), "--die-with-parent", "--new-session", "--clearenv"]
    # The server makes each call's namespaces and mounts: it keeps CAP_SYS_ADMIN (in its user
    # namespace, or beside the two uid capabilities on a root node); every call gives up all.
    cmd += ["--cap-add", "CAP_SYS_ADMIN"]
    if _is_root():
        cmd += ["--cap-add", "CAP_KILL"]  # the middle process kills a call of the task uid at its wall limit
    if not settings.network:
        cmd += ["--cap-add", "CAP_NET_ADMIN"]  # to bring up the loopback of each call's own namespace
    for name, value in _ENV.items():
        cmd += ["--setenv", name, value]
    cmd += _ro_system()
    cmd += ["--perms", "1777", "--size", str(1 * MiB), "--tmpfs", _SANDBOX_TMP]
    ro = _read_only_binds(settings, prefix)
    cmd += _parents([*ro, "/cats/lib/_launcher.py"])
    for path in ro:
        cmd += ["--ro-bind", path, path]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    for point in ("/cats/code", "/cats/inputs", "/cats/output", "/cats/.work"):
        cmd += ["--perms", "0755", "--dir", point]
    cmd += ["--bind", str(workdir), "/cats/.work"]
    cmd += [
        "--ro-bind",
        str(_LAUNCHER),
        "/cats/lib/_launcher.py",
        "--ro-bind",
        str(_CONTEXT),
        "/cats/lib/_context.py",
    ]
    return [
        *cmd,
        "--chdir",
        "/",
        "--",
        exe,
        "-I",
        "-S",
        "-B",
        "/cats/lib/_launcher.py",
        "--fork-server",
        str(fd),
        "network" if settings.network else "isolated",
    ]


def _start_fork_server(settings: SandboxSettings, exe: str, prefix: str, workdir: Path) -> _ForkServer | None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        cmd = _fork_server_command(settings, exe, prefix, workdir, theirs.fileno())
        # A fixed argv of node paths; no user data (that travels per call, in request.json).
        proc = subprocess.Popen(  # noqa: S603
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            env=dict(_ENV),
            start_new_session=True,
        )
    except OSError:
        ours.close()
        return None
    finally:
        theirs.close()
    server = _ForkServer(proc, ours)
    ours.settimeout(_FORK_START_TIMEOUT)
    try:
        hello = ours.recv(4096)
    except OSError:
        hello = b""
    ours.settimeout(None)
    if hello != b"ready":
        global fork_server_unavailable
        fork_server_unavailable = hello.decode("utf-8", "replace") or "the fork server did not start"
        server.close()
        return None
    return server


def _fork_key(settings: SandboxSettings, exe: str, prefix: str, workdir: Path) -> tuple[object, ...]:
    return (exe, prefix, settings.python_path, settings.extra_ro_paths, settings.network, str(workdir))


def _fork_server_for(settings: SandboxSettings, exe: str, prefix: str, workdir: Path) -> _ForkServer | None:
    key = _fork_key(settings, exe, prefix, workdir)
    with _FORK_LOCK:
        if key in _FORK_SERVERS:
            server = _FORK_SERVERS[key]
            if server is None or server.proc.poll() is None:
                if server is not None:
                    server.busy += 1
                    _FORK_SERVERS.move_to_end(key)
                return server
        dead = _FORK_SERVERS.pop(key, None)
        if dead is not None:
            dead.close()
        _FORK_SERVERS[key] = server = _start_fork_server(settings, exe, prefix, workdir)
        if server is not None:
            server.busy += 1
        # A worker keeps a few warm servers (one per environment it runs), not one per run ever.
        idle = [k for k, v in _FORK_SERVERS.items() if k != key and (v is None or v.busy == 0)]
        for old in idle[: max(0, len(_FORK_SERVERS) - _MAX_FORK_SERVERS)]:
            gone = _FORK_SERVERS.pop(old)
            if gone is not None:
                gone.close()
        return server


@atexit.register
def _stop_fork_servers() -> None:
    with _FORK_LOCK:
        for server in _FORK_SERVERS.values():
            if server is not None:
                server.close()
        _FORK_SERVERS.clear()


def _read_all(fd: int, deadline: float) -> bytes | None:
    """Everything written to ``fd`` until EOF; None when the deadline comes first."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _forked_call(
    server: _ForkServer, call: SandboxCall, settings: SandboxSettings, prefix: str
) -> tuple[object, int | None, bool, str] | None:
    """Run ``call`` through the fork server: (report, exit code, timed out, log); None if it is gone."""
    result_r, result_w = os.pipe()
    log_r, log_w = os.pipe()
    status_r, status_w = os.pipe()
    order = {
        "task": call.task_dir.name,
        "network": settings.network,
        "tmp_bytes": settings.limits.tmp_bytes,
        "wall_seconds": settings.limits.wall_seconds,
        "under_tmp": [p for p in _read_only_binds(settings, prefix) if Path(p).is_relative_to(_SANDBOX_TMP)],
    }
    try:
        with server.lock:
            socket.send_fds(server.control, [json.dumps(order).encode()], [result_w, log_w, status_w])
    except OSError:
        for fd in (result_r, result_w, log_r, log_w, status_r, status_w):
            os.close(fd)
        return None
    finally:
        for fd in (result_w, log_w, status_w):
            with contextlib.suppress(OSError):
                os.close(fd)
    log_parts: list[bytes] = []
    with os.fdopen(log_r, "rb") as log_stream:
        drain = threading.Thread(target=_drain, args=(log_stream, log_parts), daemon=True)
        drain.start()
        deadline = time.monotonic() + settings.limits.wall_seconds + _STATUS_GRACE
        try:
            raw = _read_all(result_r, deadline)
            status = _read_all(status_r, deadline) if raw is not None else None
        finally:
            os.close(result_r)
            os.close(status_r)
        if raw is None or status is None:
            # The middle process neither reported nor hit its own alarm: stop the whole server.
            with _FORK_LOCK:
                server.close()
            drain.join(timeout=10)
            return _TIMED_OUT, None, True, b"".join(log_parts).decode("utf-8", "replace")
        drain.join(timeout=10)
    log = b"".join(log_parts).decode("utf-8", "replace")
    if not status:
        if raw:
            return _parse_report(raw), None, False, log
        global fork_server_unavailable
        lines = log.strip().splitlines()
        fork_server_unavailable = (
            f"a call failed in the fork server: {lines[-1] if lines else 'no reason given'}"
        )
        return None
    facts = json.loads(status)
    return _parse_report(raw), int(facts["code"]), bool(facts["timed_out"]), log


def _parse_report(raw: bytes) -> object:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def run_call(call: SandboxCall, settings: SandboxSettings) -> CallResult:
    """Run ``call`` in a fresh child confined as ``settings.mode`` says; wait for it and check the output.

    The task directory must hold ``code/``, ``inputs/`` and an empty ``output/``. Never raises for
    what the user's code does: every failure (including a limit) is a :class:`CallResult` with an
    ``error`` line; raises :class:`~cats_runtime.errors.ExecutionError` only when the sandbox
    itself cannot be set up.
    """
    exe, prefix = _interpreter(settings)
    output = call.task_dir / "output"
    mode = settings.mode
    uid = _task_uid() if mode == "uid" or (mode == "bwrap" and _is_root()) else None
    # bwrap: the fixed in-sandbox layout. uid: paths relative to the task directory, which is the
    # child's cwd, entered while still root: the task uid can search the task directory (0711) but
    # not the node's work directory above it, so it reaches its own task and nothing else.
    root = "/cats" if mode == "bwrap" else "." if uid is not None else str(call.task_dir)
    (call.task_dir / "request.json").write_text(
        json.dumps(_request(call, settings, root, uid)), encoding="utf-8"
    )
    if uid is not None:
        _own_output(output, uid)
    if mode == "bwrap" and os.environ.get("CATS_SANDBOX_FORK", "1") != "0":
        server = _fork_server_for(settings, exe, prefix, call.task_dir.parent)
        done = None
        if server is not None:
            try:
                done = _forked_call(server, call, settings, prefix)
            finally:
                with _FORK_LOCK:
                    server.busy -= 1
        if done is not None:
            reported, code, timed_out, log = done
            return _finish(call, settings, uid, reported, code, timed_out, log)
        # No server here, or it died before reporting: a fresh bwrap for this call, and for the
        # later calls of this worker (a server that failed once is not trusted to work again).
        with _FORK_LOCK:
            failed = _FORK_SERVERS.get(key := _fork_key(settings, exe, prefix, call.task_dir.parent))
            if failed is not None:
                failed.close()
            _FORK_SERVERS[key] = None
        _empty(output)
    read_fd, write_fd = os.pipe()
    env = dict(_ENV)
    try:
        if mode == "bwrap":
            cmd = _bwrap_command(call, settings, exe, prefix, write_fd)
            kwargs: dict[str, Any] = {}
        else:
            cmd = [exe, "-I", "-S", "-B", str(_LAUNCHER), str(call.task_dir / "request.json"), str(write_fd)]
            kwargs = {"cwd": str(output)}
            if uid is not None:
                # The launcher starts as root only long enough to set its limits and drop to the
                # task uid, before it reads a byte of user code.
                call.task_dir.chmod(0o711)
                kwargs["cwd"] = str(call.task_dir)
        # argv built here from fixed flags and node paths; user data travels in request.json only.
        proc = subprocess.Popen(  # noqa: S603
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            env=env,
            start_new_session=True,  # the whole group is killed at the wall-clock limit
            **kwargs,
        )
    except OSError as exc:
        os.close(read_fd)
        raise ExecutionError(f"cannot start the sandbox ({mode}): {exc}") from exc
    finally:
        os.close(write_fd)
    log_parts: list[bytes] = []
    drain = threading.Thread(target=_drain, args=(proc.stdout, log_parts), daemon=True)
    drain.start()
    with os.fdopen(read_fd, "rb") as reader:
        reported = _read_result(reader, proc, settings.limits.wall_seconds)
    timed_out = reported is _TIMED_OUT
    try:
        code = proc.wait(timeout=10)  # the report is in (or the pipe closed): the child is exiting
    except subprocess.TimeoutExpired:
        code = -signal.SIGKILL
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of uid/none modes; bwrap's pid ns is gone already
    proc.wait()
    drain.join(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()
    if mode == "bwrap" and code > 128:
        code = -(code - 128)  # bwrap exits 128+n when its child died of n
    return _finish(
        call, settings, uid, reported, code, timed_out, b"".join(log_parts).decode("utf-8", "replace")
    )


def _empty(output: Path) -> None:
    from ._materialize import remove_tree

    # Whatever a call that died in a failed server left; the directory itself (and its owner,
    # the task uid on a root node) stays for the fresh bwrap.
    for entry in list(output.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            remove_tree(entry)
        else:
            entry.unlink()


def _finish(
    call: SandboxCall,
    settings: SandboxSettings,
    uid: int | None,
    reported: object,
    code: int | None,
    timed_out: bool,
    log: str,
) -> CallResult:
    output = call.task_dir / "output"
    if uid is not None:
        _reclaim_output(output)
    error: str | None
    if timed_out:
        error = f"LimitError: the task ran longer than {settings.limits.wall_seconds} s (wall clock)"
    elif isinstance(reported, dict):
        error = None if reported.get("ok") is True else str(reported.get("error") or "the call failed")
    elif code is not None and code < 0:
        error = _signal_reason(-code, settings.limits)
    else:
        error = f"ExecutionError: the task exited with status {code} without reporting a result"
    if error is None:
        error = _check_output(output, settings.limits)
    return CallResult(error, log, settings.mode)


_TIMED_OUT: Final = object()


def _read_result(reader: Any, proc: subprocess.Popen[bytes], wall: int) -> object:
    """The child's JSON report (None if it sent none); ``_TIMED_OUT`` past the wall-clock limit."""
    box: list[bytes] = []

    def read() -> None:
        box.append(reader.read(1 << 16))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout=wall)
    if thread.is_alive():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        thread.join(timeout=10)
        return _TIMED_OUT
    return _parse_report(box[0] if box else b"")
