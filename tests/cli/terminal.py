"""Run the real ``cats`` executable as a person does (stderr and stdin on a pseudo-terminal) or as a
script does (everything piped), and read what it left on the terminal (tests only)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CATS = str(Path(sys.executable).with_name("cats"))
REPO_ROOT = Path(__file__).resolve().parents[2]
Mode = Literal["pty", "pipe"]
MODES: tuple[Mode, ...] = ("pty", "pipe")
_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Result:
    """A finished command: exit code, stdout, and stderr as raw text and as the lines it shows."""

    code: int
    out: str
    err: str
    mode: Mode

    @property
    def shown(self) -> list[str]:
        """The non-empty stderr lines a terminal would show (``\\r`` overwrites, escapes dropped)."""
        lines = []
        for raw in self.err.replace("\r\n", "\n").split("\n"):
            visible = _CSI.sub("", raw.rsplit("\r", 1)[-1])
            if visible.strip():
                lines.append(visible)
        return lines

    def describe(self) -> str:
        # The tail is what matters (a progress line repaints ten times a second before it).
        return f"[{self.mode}] exit {self.code}\nstdout: {self.out[-2000:]!r}\nstderr: {self.err[-2000:]!r}"


def cats(
    mode: Mode, *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> Result:
    """Run ``cats --home HOME ARGS`` with stderr (and stdin) on a new pty, or with pipes."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CATS_HOME": str(home), **(env or {})}
    argv = [CATS, "--home", str(home), *args]
    if mode == "pipe":
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=full_env, timeout=timeout, stdin=subprocess.DEVNULL
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, mode)
    return _in_pty(argv, full_env, timeout)


def _in_pty(argv: list[str], env: dict[str, str], timeout: float) -> Result:
    # stdout stays a pipe so the tests can parse it; stderr, where progress and errors go, and
    # stdin are the terminal. The pty must be drained while the child runs, or it blocks writing.
    primary, secondary = os.openpty()
    env = {**env, "TERM": "xterm", "COLUMNS": "100", "LINES": "40"}
    try:
        proc = subprocess.Popen(
            argv,
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=secondary,
            env=env,
            start_new_session=True,
        )
    finally:
        os.close(secondary)
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    err, out = bytearray(), bytearray()
    open_fds = {primary, out_fd}
    deadline = time.monotonic() + timeout
    try:
        # Read until the child has exited and its output is drained. Not until EOF: a helper it
        # leaves running (a warm Ray) may inherit the terminal and keep it open.
        while open_fds:
            exited = proc.poll() is not None
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"{argv} did not finish in {timeout}s; stderr so far: {bytes(err)!r}")
            ready, _, _ = select.select(list(open_fds), [], [], 0.2)
            if not ready and exited:
                break
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: every holder closed its side of the pty
                    chunk = b""
                if not chunk:
                    open_fds.discard(fd)
                    continue
                (err if fd == primary else out).extend(chunk)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(primary)
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Result(code, out.decode(errors="replace"), err.decode(errors="replace"), "pty")


def assert_ok(result: Result) -> None:
    """Exit 0 and nothing that looks like a crash."""
    assert result.code == 0, result.describe()
    assert "Traceback" not in result.err, result.describe()
    if result.mode == "pipe":  # progress is for terminals only: a log file gets no escapes
        assert "\r" not in result.err and "\x1b[" not in result.err, result.describe()


def assert_fails(result: Result, code: int, match: str = "") -> str:
    """Exit ``code`` with exactly one line shown on stderr, ``error: ...``; returns that line."""
    assert result.code == code, result.describe()
    assert "Traceback" not in result.err, result.describe()
    assert len(result.shown) == 1, result.describe()
    line = result.shown[0]
    assert line.startswith("error: ") and match in line, result.describe()
    return line
