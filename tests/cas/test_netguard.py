"""Guarded connections: address checks, the total deadline, credential stripping (real sockets)."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cats_runtime.cas import Deadline, Destination, PeerGuard, strip_credentials
from cats_runtime.cas._netguard import _is_public
from cats_runtime.errors import InvalidInputError, PeerError


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", False),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_only_public_addresses_pass_without_registration(address: str, public: bool) -> None:
    assert _is_public(ipaddress.ip_address(address)) is public


def test_a_name_resolving_to_loopback_is_refused_unless_allowed() -> None:
    with pytest.raises(PeerError, match="non-public addresses"):
        Destination.parse("http://localhost:8700").addresses()
    assert "127.0.0.1" in Destination.parse("http://localhost:8700", allow_private=True).addresses()
    assert Destination.parse("http://[::1]:8700").addresses() == ["::1"]  # a literal is explicit


def test_a_destination_connects_only_to_its_own_host_and_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        dest = Destination.parse(f"http://127.0.0.1:{port}")
        with Deadline(10) as deadline:
            for host, other in (("127.0.0.1", port + 1), ("localhost", port), ("127.0.0.2", port)):
                with pytest.raises(PeerError, match="may only reach"):
                    dest.connect(host, other, 5, deadline)
            dest.connect("127.0.0.1", port, 5, deadline).close()


def test_the_deadline_ends_a_read_that_keeps_receiving_bytes() -> None:
    """A per-read timeout never fires on a peer that drips; the total deadline does."""
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def drip() -> None:
            conn, _ = server.accept()
            with conn:
                while not stop.wait(0.2):
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        return

        thread = threading.Thread(target=drip, daemon=True)
        thread.start()
        guard = PeerGuard(Destination.parse(f"http://127.0.0.1:{port}"), Deadline(1.0))
        started = time.monotonic()
        sock = guard.create_connection(("127.0.0.1", port), timeout=30)
        with sock, sock.makefile("rb") as stream:
            data = stream.read(1 << 20)  # a buffered read that waits for the whole megabyte
        elapsed = time.monotonic() - started
        stop.set()
        thread.join(5)
    assert 0 < len(data) < 1 << 20
    assert 0.9 < elapsed < 3, elapsed
    assert guard.deadline.expired
    with pytest.raises(PeerError, match="deadline of 1s passed"):
        guard.create_connection(("127.0.0.1", port), timeout=30)


def test_the_guarded_client_ignores_proxies_and_does_not_follow_redirects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hits: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                hits.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would be refused if it were used
        monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
        guard = PeerGuard(Destination.parse(f"http://127.0.0.1:{port}"), Deadline(10))
        with guard.client(timeout=5) as client:
            response = client.get(f"http://127.0.0.1:{port}/ipfs/x")
        thread.join(5)
    assert response.status_code == 302 and len(hits) == 1
    with guard.client(timeout=5) as client, pytest.raises(httpx.ConnectError, match="may only reach"):
        client.get("http://127.0.0.1:9/")


def test_registrations_hold_nothing_secret() -> None:
    for url in ("http://u:p@h:1", "http://h:1/?token=x", "http://h:1/#f", "ftp://h", "http://:80"):
        with pytest.raises(InvalidInputError):
            Destination.parse(url, plain=True)
    assert Destination.parse("HTTPS://Gw.Example.org/cats/").url == "https://gw.example.org:443/cats"


_SECRET_NAMES = st.sampled_from(
    ["apikey", "api_key", "token", "access_token", "X-Amz-Signature", "sig", "password", "auth", "secret"]
)
_VALUES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=6, max_size=20)


@given(names=st.lists(_SECRET_NAMES, min_size=1, max_size=4), value=_VALUES, user=_VALUES)
def test_stripped_urls_keep_no_secret(names: list[str], value: str, user: str) -> None:
    marker = "Zq9" + value
    query = urllib.parse.urlencode([(n, marker) for n in names] + [("keep", "1")])
    userinfo = urllib.parse.quote(marker, safe="") + ":" + urllib.parse.quote(user + marker, safe="")
    url = f"http://{userinfo}@127.0.0.1:8700/gw?{query}#{urllib.parse.quote(marker)}"
    clean = strip_credentials(url)
    assert clean == "http://127.0.0.1:8700/gw?keep=1"
    assert urllib.parse.quote(marker, safe="") not in clean and marker not in urllib.parse.unquote(clean)


# Run in a new user, network and mount namespace: the name server at 127.0.0.1:53 is a socket
# that reads every query and never answers, as a dead or hostile resolver would.
_BLACK_HOLE_DNS = """
import ctypes, json, os, socket, sys, threading, time
from cats_runtime.cas import Deadline, Destination
from cats_runtime.errors import PeerError
from cats_runtime.execution._launcher import _loopback_up

_loopback_up()
libc = ctypes.CDLL(None, use_errno=True)
MS_BIND = 4096
if libc.mount(sys.argv[1].encode(), b"/etc/resolv.conf", None, MS_BIND, None) != 0:
    sys.exit(f"bind mount failed: {os.strerror(ctypes.get_errno())}")
hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
hole.bind(("127.0.0.1", 53))
queries = []

def swallow():
    while True:
        queries.append(len(hole.recvfrom(4096)[0]))

threading.Thread(target=swallow, daemon=True).start()
host = "peer.cats-test.example"
start = time.monotonic()
try:
    Destination.parse(f"http://{host}:8080").connect(host, 8080, None, Deadline(1.0))
    error = None
except PeerError as exc:
    error = str(exc)
print(json.dumps({"elapsed": time.monotonic() - start, "error": error, "queries": len(queries)}))
"""


def test_the_deadline_bounds_a_name_lookup_that_never_answers(tmp_path: Path) -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rnm", "true"], check=False).returncode:
        pytest.skip("needs unprivileged user namespaces (unshare -rnm)")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:3 attempts:2\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        ["unshare", "-rnm", "--", sys.executable, "-c", _BLACK_HOLE_DNS, str(resolv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["queries"] >= 1, "the lookup never reached the black-hole name server"
    # Without the bound the resolver's own timeouts hold it for 6 s or more (3 s x 2 attempts).
    assert result["error"] and "deadline" in result["error"], result
    assert result["elapsed"] < 2.5, result
