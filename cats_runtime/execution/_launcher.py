"""The program that runs inside a task's sandbox: limits, then one call of the user's function.

It is started as ``python -I -S -B _launcher.py REQUEST RESULT_FD`` by :mod:`._sandbox` and must
stay importable with nothing but the standard library (no ``site``, no ``cats_runtime``): the
interpreter may be a built Environment's, and the child must not see the node's packages. Only
``_context.py`` (loaded from the path the request names) comes with it, so ``ctx`` is the same
:class:`~._context.Context` the function gets anywhere else.

Order matters: the resource limits are set, and (when asked) the unprivileged task uid is taken,
*before* any byte of user code is imported, so nothing the code does at import time escapes them.
The outcome goes back as one JSON object on ``RESULT_FD`` (never pickle); stdout and stderr are
the task's log.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import resource
import signal
import sys
import types
from pathlib import Path
from typing import Any

# Only modules every task needs are imported up front (each costs every datum its import time);
# ``logging`` waits for ``ctx.log``, ``traceback`` for a failure.

# Which limit an exception means, so the Invoice names the limit rather than a bare errno.
_LIMIT_ERRNOS = {
    errno.EFBIG: "a file under the output grew past the output budget of {output_bytes} bytes",
    errno.EMFILE: "more than {open_files} open files",
    errno.EAGAIN: "more than {processes} processes (or threads)",
    errno.ENOSPC: "the task's private /tmp is full ({tmp_bytes} bytes)",
}


def _limits(limits: dict[str, int]) -> None:
    # CPU: SIGXCPU at the soft limit (reported by _on_xcpu), SIGKILL a second later at the hard one.
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
    pairs = (
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_NPROC, limits["processes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_FSIZE, limits["output_bytes"]),
        (resource.RLIMIT_CORE, 0),
    )
    for which, value in pairs:
        resource.setrlimit(which, (value, value))


_result: Any = None


def _report(outcome: dict[str, Any]) -> None:
    global _result
    if _result is not None:
        _result.write(json.dumps(outcome))
        _result.close()
        _result = None


def _on_xcpu(limits: dict[str, int]) -> Any:
    def handler(signum: int, frame: Any) -> None:
        _report(
            {
                "ok": False,
                "error": f"LimitError: the task used more than {limits['cpu_seconds']} s of CPU time",
            }
        )
        os._exit(1)

    return handler


def _drop_to(uid: int) -> None:
    # Groups first: after setuid the process could no longer change them.
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise PermissionError(f"expected to run as uid {uid}, found {os.getuid()}/{os.geteuid()}")


def _load_module(name: str, path: str) -> Any:
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module
    with open(path, encoding="utf-8") as f:
        source = f.read()
    exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 -- the runtime's own _context.py
    return module


def _load_entrypoint(code_dir: str, package: str, entrypoint: str) -> Any:
    module_name, attr = entrypoint.split(":")
    # The code directory is a package of its own (relative imports work); nothing of it goes on
    # sys.path, so it cannot shadow the standard library or the Environment.
    pkg = types.ModuleType(package)
    pkg.__path__ = [code_dir]
    sys.modules[package] = pkg
    try:
        module = importlib.import_module(f"{package}.{module_name}")
    except Exception as exc:
        raise _Failure(
            f"ExecutionError: cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise _Failure(f"ExecutionError: expected a callable {attr!r} in module {module_name!r}, found none")
    return fn


class _Failure(Exception):
    """A failure whose one-line reason is already formatted."""


def _reason(exc: BaseException, limits: dict[str, int]) -> str:
    if isinstance(exc, _Failure):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"LimitError: the task ran out of memory (limit {limits['memory_bytes']} bytes)"
    if isinstance(exc, OSError) and exc.errno in _LIMIT_ERRNOS:
        return "LimitError: " + _LIMIT_ERRNOS[exc.errno].format(**limits) + f" ({exc})"
    return f"{type(exc).__name__}: {exc}"


def _execute(req: dict[str, Any], result_fd: int) -> None:
    """Limits, the task uid, then one call of the user's function; the outcome goes to ``result_fd``."""
    global _result
    _result = os.fdopen(result_fd, "w", encoding="utf-8")
    limits: dict[str, int] = req["limits"]
    outcome: dict[str, Any]
    signal.signal(signal.SIGXCPU, _on_xcpu(limits))
    try:
        _limits(limits)
        if req.get("uid") is not None:
            _drop_to(int(req["uid"]))
        if req.get("forked"):
            _drop_capabilities()
        sys.dont_write_bytecode = True  # code and environment are read-only and content-addressed
        sys.path[:] = [*req["python_path"], *sys.path]
        context = sys.modules.get("cats_context") or _load_module("cats_context", req["context"])
        log = f"cats.function.{req['key']}"
        inputs = {name: Path(p) for name, p in req["inputs"].items()}
        datum = None
        if req["datum"] is not None:
            d = req["datum"]
            datum = context.Datum(d["input"], d["name"], Path(d["path"]), d["cid"])
        ctx = context.Context(
            inputs=inputs,
            output=Path(req["output"]),
            params=req["params"],
            seed=req["seed"],
            log=log,
            datum=datum,
        )
        fn = _load_entrypoint(req["code"], req["package"], req["entrypoint"])
        fn(ctx)
        sys.stdout.flush()
        sys.stderr.flush()
        outcome = {"ok": True}
    except (Exception, SystemExit) as exc:  # a function calling sys.exit() failed too
        if not isinstance(exc, _Failure):
            import traceback

            traceback.print_exc()
        outcome = {"ok": False, "error": _reason(exc, limits)}
    _report(outcome)


def main(argv: list[str]) -> int:
    """Run the request in ``argv[1]``, report on the file descriptor ``argv[2]``.

    ``--fork-server CONTROL_FD network|isolated`` instead serves calls forked from this warm interpreter (see
    :func:`_fork_server`).
    """
    if argv[1] == "--fork-server":
        _fork_server(int(argv[2]), network=argv[3] == "network")
        return 0
    with open(argv[1], encoding="utf-8") as f:
        req = json.load(f)
    _execute(req, int(argv[2]))
    return 0


# -- the fork server -------------------------------------------------------------------------------
# Starting Python and importing what every task needs costs ~50 ms per task; forking a warm
# interpreter costs ~2. The fork server is one sandbox (bubblewrap) per worker and environment
# that holds no task's data: the node's work directory is bound at /cats/.work, and nothing else
# of the host but the system, the interpreter and its environment (read-only). For each call it
# forks a child that enters new mount, pid, ipc (and network) namespaces, binds its own task's
# code and inputs read-only and its output read-write, unmounts the work directory (so no other
# task exists for it), mounts a fresh size-capped /tmp and /proc, then forks the task process:
# pid 1 of its own pid namespace, which sets the limits, gives up every privilege (the task uid,
# no capabilities) and only then imports user code. When it ends, everything it started dies
# with its namespace. The middle process waits for it, enforces the wall-clock limit and reports
# the exit status.
_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_PR_SET_PDEATHSIG = 1
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_WORK = "/cats/.work"
_libc: Any = None


def _check(rc: int, what: str) -> None:
    if rc != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount {target}")


def _remount(target: str, flags: int) -> None:
    # Keeps the flags the mount has: in a user namespace, clearing an inherited nosuid, nodev or
    # noexec is refused (EPERM), and only adding restrictions is wanted here anyway.
    have = os.statvfs(target).f_flag
    kept = sum(
        ms
        for st, ms in ((os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV), (os.ST_NOEXEC, _MS_NOEXEC))
        if have & st
    )
    _mount(None, target, None, _MS_BIND | _MS_REMOUNT | kept | flags)


def _bind(source: str, target: str, *, read_only: bool) -> None:
    _mount(source, target, None, _MS_BIND | _MS_REC)
    _remount(target, _MS_NOSUID | _MS_NODEV | (_MS_RDONLY if read_only else 0))


def _drop_capabilities() -> None:
    """No capability left in any set (a root node's task uid has none already)."""
    import ctypes

    libc = _libc or ctypes.CDLL(None, use_errno=True)
    # capset(2) takes a header {version, pid} and two {effective, permitted, inheritable} words:
    # all zero. Plain uint32 arrays (made once per process) instead of Structure classes.
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    _check(libc.capset(header, data), "capset")
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("CapEff:", "CapPrm:", "CapAmb:")) and int(line.split()[1], 16) != 0:
                raise PermissionError(f"expected no capabilities left, found {line.strip()}")


def _fork_server(control_fd: int, *, network: bool) -> None:
    import ctypes
    import socket

    global _libc
    _libc = ctypes.CDLL(None, use_errno=True)
    _ = (ctypes.c_uint32 * 2, ctypes.c_uint32 * 6)  # array types made once, here, not per call
    control = socket.socket(fileno=control_fd)
    # What every task would import anyway: paid once here, shared by every fork.
    _load_module("cats_context", "/cats/lib/_context.py")
    import logging  # noqa: F401 -- ctx.log
    import traceback

    failure = _self_test(network)
    if failure is not None:
        control.sendall(f"unusable: {failure}".encode())
        return
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the middle processes are reaped by the kernel
    control.sendall(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 16, 3)
        except OSError:
            return
        if not message:
            return  # the worker closed its end: nothing more to run
        pid = os.fork()
        if pid == 0:
            code = 127
            try:
                control.close()
                _middle(json.loads(message), fds)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)


def _enter(network: bool, tmp_bytes: int, under_tmp: list[str] = []) -> None:  # noqa: B006 -- read only
    """New namespaces for one call; the server's shared writable places made private or read-only.

    ``under_tmp`` are the server's read-only binds below /tmp (an environment there): bound again
    on top of the call's fresh /tmp.
    """
    flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC | (0 if network else _CLONE_NEWNET)
    _check(_libc.unshare(flags), "unshare")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing mounted here reaches the server's view
    # The server's root and /dev are one tmpfs each for every call: read-only for this one, so no
    # call leaves anything there for the next; /tmp and /dev/shm are fresh.
    for shared in ("/", "/dev"):
        _remount(shared, _MS_RDONLY | _MS_NOSUID)
    if not network:
        _loopback_up()
    held = [os.open(path, os.O_PATH | os.O_DIRECTORY) for path in under_tmp]
    for private in ("/tmp", "/dev/shm"):  # noqa: S108
        if os.path.isdir(private):
            _mount("tmpfs", private, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={tmp_bytes},mode=1777")
    for path, fd in zip(under_tmp, held, strict=True):
        os.makedirs(path, mode=0o755, exist_ok=True)
        _bind(f"/proc/self/fd/{fd}", path, read_only=True)
        os.close(fd)


def _loopback_up() -> None:
    # As bubblewrap does: the new network namespace's own loopback works, nothing else exists.
    import fcntl
    import socket
    import struct

    siocsifflags, iff_up = 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sh22x", b"lo", iff_up))


def _self_test(network: bool) -> str | None:
    """Whether this kernel lets the server make a call's namespaces (None) or why not."""
    pid = os.fork()
    if pid == 0:
        try:
            _enter(network, 1 << 20)
            inner = os.fork()
            if inner == 0:
                try:
                    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
                finally:
                    os._exit(0 if os.getpid() == 1 else 3)
            _, status = os.waitpid(inner, 0)
            os._exit(os.waitstatus_to_exitcode(status))
        except BaseException as exc:
            os.write(2, f"{exc}\n".encode())
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return None if code == 0 else f"the namespace self-test exited with status {code}"


def _middle(order: dict[str, Any], fds: list[int]) -> None:
    result_fd, log_fd, status_fd = fds
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    task = f"{_WORK}/{order['task']}"
    if "/" in order["task"] or order["task"] in ("", ".", ".."):
        raise ValueError(f"expected a task directory name, found {order['task']!r}")
    with open(f"{task}/request.json", encoding="utf-8") as f:
        req = json.load(f)
    req["forked"] = True
    _enter(bool(order["network"]), int(order["tmp_bytes"]), list(order["under_tmp"]))
    _bind(f"{task}/code", "/cats/code", read_only=True)
    _bind(f"{task}/inputs", "/cats/inputs", read_only=True)
    _bind(f"{task}/output", "/cats/output", read_only=False)
    if _libc.umount2(_WORK.encode(), _MNT_DETACH) != 0:
        # Locked (a user namespace inherits the mount from bwrap's setup): covered instead by an
        # empty read-only tmpfs, which the call, holding no capability, cannot take away.
        _mount("tmpfs", _WORK, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=4k,mode=0555")
        _remount(_WORK, _MS_RDONLY)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(status_fd)
            _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
            _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
            os.chdir("/tmp")  # noqa: S108
            _execute(req, result_fd)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(0)
    os.close(result_fd)
    timed_out = []

    def on_alarm(signum: int, frame: Any) -> None:
        timed_out.append(True)
        os.kill(pid, signal.SIGKILL)  # pid 1 of its namespace: everything it started goes too

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(order["wall_seconds"]))
    _, status = os.waitpid(pid, 0)
    signal.alarm(0)
    code = os.waitstatus_to_exitcode(status)
    os.write(status_fd, json.dumps({"code": code, "timed_out": bool(timed_out)}).encode())
    os.close(status_fd)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
