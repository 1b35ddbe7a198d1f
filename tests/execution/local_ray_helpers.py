"""Helpers of the warm local Ray tests: real ``cats`` processes and what the kernel says about them."""

from __future__ import annotations

import importlib
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

# Ray ships psutil in its own third-party directory, which importing Ray puts on sys.path.
psutil: Any = importlib.import_module("psutil") if ray else None

CATS = str(Path(sys.executable).with_name("cats"))


def cats(
    home: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the ``cats`` CLI on ``home`` as a separate process."""
    full = {**os.environ, "CATS_HOME": str(home), **(env or {})}
    proc = subprocess.run(
        [CATS, "--home", str(home), *args], capture_output=True, text=True, env=full, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cats {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def ray_status(home: Path) -> dict[str, Any]:
    return json.loads(cats(home, "ray", "status", "--json").stdout)  # type: ignore[no-any-return]


def tiny_function(tmp_path: Path) -> tuple[str, Path]:
    """A Function that writes one small file, and an input file for it."""
    code = tmp_path / "tinyfn"
    code.mkdir(exist_ok=True)
    (code / "tiny.py").write_text("def main(ctx):\n    (ctx.output / 'out.txt').write_text('tiny\\n')\n")
    data = tmp_path / "input.txt"
    data.write_text("input\n")
    return f"{code}:tiny:main", data


def listening(pid: int) -> list[tuple[int, str, str, int]]:
    """``(pid, name, ip, port)`` of every listening inet socket of ``pid`` and its descendants."""
    root = psutil.Process(pid)
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN:
                found.append((proc.pid, name, conn.laddr.ip, conn.laddr.port))
    return found


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    out = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return out


def poll(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    """Wait until ``condition()`` holds (a poll on state, not a sleep standing in for one)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        time.sleep(0.2)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
