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


def main(argv: list[str]) -> int:
    """Run the request in ``argv[1]``, report on the file descriptor ``argv[2]``."""
    with open(argv[1], encoding="utf-8") as f:
        req = json.load(f)
    global _result
    _result = os.fdopen(int(argv[2]), "w", encoding="utf-8")
    limits: dict[str, int] = req["limits"]
    outcome: dict[str, Any]
    signal.signal(signal.SIGXCPU, _on_xcpu(limits))
    try:
        _limits(limits)
        if req.get("uid") is not None:
            _drop_to(int(req["uid"]))
        sys.dont_write_bytecode = True  # code and environment are read-only and content-addressed
        sys.path[:] = [*req["python_path"], *sys.path]
        context = _load_module("cats_context", req["context"])
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
