"""Reaching a Plant's private Ray Jobs API and Kubo RPC through the Kubernetes API.

Neither API has a public Service (the policy pack refuses one): ``cats redeploy`` runs
``kubectl port-forward service/<name> :<port>`` with the stack's own kubeconfig, bound to
127.0.0.1 only, and talks to the loopback port kubectl picked. The in-cluster addresses the
stack exports (``http://<service>.<namespace>.svc:<port>``) say which Service and port to forward.
Every address used from here is then checked to be loopback: a public one is refused.
"""

from __future__ import annotations

import ipaddress
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final
from urllib.parse import urlsplit

from ..errors import InvalidInputError, ProvisionError

__all__ = ["PortForward", "ServiceTarget", "forward_argv", "require_loopback", "service_target"]

KUBECTL_HINT: Final = (
    "kubectl is not on PATH (needed to reach the Plant's private Ray and Kubo through the "
    "Kubernetes API): install it from https://kubernetes.io/docs/tasks/tools/"
)
# kubectl prints one such line per listening address once the forward is up.
_FORWARDING = re.compile(r"^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)\s*$")


def require_loopback(url: str, what: str) -> str:
    """``url`` when its host is a loopback address; a public or in-cluster one is refused.

    Raises:
        InvalidInputError: The host is not 127.0.0.0/8, ::1 or ``localhost``.
    """
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidInputError(
            f"expected {what} on a loopback address (a port-forward; Ray and Kubo RPC are never "
            f"public), found {url!r}"
        )
    return url


@dataclass(frozen=True)
class ServiceTarget:
    """A Kubernetes Service port to forward."""

    namespace: str
    service: str
    port: int


def service_target(url: str, what: str) -> ServiceTarget:
    """The Service behind an in-cluster URL ``http://<service>.<namespace>.svc[.cluster.local]:<port>``.

    Raises:
        ProvisionError: The stack exported something else.
    """
    parts = urlsplit(url)
    labels = (parts.hostname or "").split(".")
    try:
        port = parts.port
    except ValueError:
        port = None
    if len(labels) < 3 or labels[2] != "svc" or not labels[0] or not labels[1] or port is None:
        raise ProvisionError(
            f"expected the stack's {what} as http://<service>.<namespace>.svc:<port>, found {url!r}"
        )
    return ServiceTarget(labels[1], labels[0], port)


def forward_argv(kubectl: str, kubeconfig: Path, target: ServiceTarget) -> list[str]:
    """The ``kubectl port-forward`` command: the stack's kubeconfig, loopback only, any free local port."""
    return [
        kubectl,
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        target.namespace,
        "port-forward",
        "--address",
        "127.0.0.1",
        f"service/{target.service}",
        f":{target.port}",
    ]


def _lines(stream: IO[str], out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def _drain(stream: IO[str], tail: deque[str]) -> None:
    # Read stderr all along: a full pipe would block kubectl mid-forward.
    for line in stream:
        tail.append(line.strip())


class PortForward:
    """``kubectl port-forward`` to one Service port for the duration of a ``with`` block.

    Args:
        kubeconfig: The stack's kubeconfig (a secret stack output): written to a private
            temporary file (mode 0600) for kubectl and removed afterwards.
        target: The Service port to forward.
        which: Locates ``kubectl``.
        timeout: Seconds to wait for kubectl to report the forward.
    """

    def __init__(
        self,
        kubeconfig: str,
        target: ServiceTarget,
        *,
        which: Callable[[str], str | None] = shutil.which,
        timeout: float = 60.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.target = target
        self.which = which
        self.timeout = timeout
        self.url: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str:
        kubectl = self.which("kubectl")
        if kubectl is None:
            raise ProvisionError(KUBECTL_HINT)
        self._tmp = tempfile.TemporaryDirectory(prefix="cats-kube-")
        path = Path(self._tmp.name) / "kubeconfig"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.kubeconfig)
        try:
            self.url = self._start(forward_argv(kubectl, path, self.target))
        except BaseException:
            self.close()
            raise
        return self.url

    def _start(self, argv: list[str]) -> str:
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        lines: queue.Queue[str | None] = queue.Queue()
        errors: deque[str] = deque(maxlen=20)
        threading.Thread(target=_lines, args=(self._process.stdout, lines), daemon=True).start()
        stderr = threading.Thread(target=_drain, args=(self._process.stderr, errors), daemon=True)
        stderr.start()
        where = f"service/{self.target.service}:{self.target.port} in namespace {self.target.namespace}"
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise ProvisionError(
                    f"kubectl port-forward to {where} reported no forward within {self.timeout:.0f} s"
                ) from None
            if line is None:  # kubectl exited before forwarding
                self._process.wait()
                stderr.join(timeout=5)
                error = [e for e in errors if e]
                raise ProvisionError(
                    f"kubectl port-forward to {where} failed: {error[-1] if error else 'no message'}"
                )
            match = _FORWARDING.match(line)
            if match:
                return require_loopback(f"http://127.0.0.1:{int(match[1])}", f"the forward to {where}")

    def close(self) -> None:
        """Stop kubectl and remove the kubeconfig file."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            for stream in (self._process.stdout, self._process.stderr):
                if stream is not None:
                    stream.close()
            self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
