"""Probe Functions that try to escape, submitted to a real node (``POST /orders``) and run with ``cats run``.

One node process (one embedded Ray) serves every probe of an "evil" organization; each probe must
fail with its reason in the Invoice, and afterwards an "honest" organization's Order must produce
its correct output, and every BOM the node signed must still verify.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nodeproc import CATS, NodeProcess, make_order_car, prepare_home, start_node, wait_run

from cats_runtime.cas import CID, Repo, cat, ls
from cats_runtime.execution import bwrap_available
from cats_runtime.operations import TokenStore

pytestmark = pytest.mark.skipif(bwrap_available() is not None, reason=f"bwrap unusable: {bwrap_available()}")

CAR = {"Content-Type": "application/vnd.ipld.car"}

# name -> (body of main(ctx), text the Invoice's error must contain)
PROBES: dict[str, tuple[str, str]] = {
    "key": ("data = open(P['home'] + '/keys/node.key', 'rb').read()", "FileNotFoundError"),
    "tokens": ("data = open(P['home'] + '/node/tokens.json', 'rb').read()", "FileNotFoundError"),
    "list_home": ("data = repr(os.listdir(P['home'])).encode()", "FileNotFoundError"),
    "write_allow": (
        "open(P['home'] + '/node/allow.txt', 'a').write('*\\n'); data = b'w'",
        "FileNotFoundError",
    ),
    "write_work": ("open(P['home'] + '/work/task-1-x', 'w').write('x'); data = b'w'", "FileNotFoundError"),
    "write_host": ("open(P['outside'], 'w').write('x'); data = b'w'", "FileNotFoundError"),
    "code_cache": ("open(P['cache'] + '/main.py', 'w').write('evil'); data = b'w'", "FileNotFoundError"),
    "loopback": (
        "import socket; s = socket.create_connection(('127.0.0.1', P['port']), timeout=5); "
        "s.sendall(b'leak'); data = b'sent'",
        "ConnectionRefusedError",
    ),
    "fork": (
        "import time\n    for _ in range(3000):\n"
        "        if os.fork() == 0:\n            time.sleep(5); os._exit(0)\n    data = b'forked'",
        "LimitError: more than 64 processes",
    ),
    "memory": ("data = bytes(bytearray(1 << 30))[:1]", "LimitError: the task ran out of memory"),
    "output": (
        "f = open(ctx.output / 'big', 'wb')\n    for _ in range(8):\n        f.write(b'x' * (1 << 19))\n"
        "    data = b'big'",
        "LimitError: a file under the output grew past the output budget of 2097152 bytes",
    ),
}


def _probe_dir(base: Path, name: str, body: str) -> Path:
    d = base / "probes" / name
    d.mkdir(parents=True)
    (d / "probe.py").write_text(
        f"import os\n\ndef main(ctx):\n    P = ctx.params\n    {body}\n"
        "    (ctx.output / 'stolen').write_bytes(data)\n"
    )
    return d


class Env:
    node: NodeProcess
    base: Path
    evil: str
    honest: str
    cars: dict[str, bytes]
    honest_car: bytes
    listener: socket.socket


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env()
    e.base = tmp_path_factory.mktemp("probes")
    home = e.base / "node"
    e.listener = socket.socket()
    e.listener.bind(("127.0.0.1", 0))
    e.listener.listen(8)
    e.listener.setblocking(False)
    victim = e.base / "cache" / "victim"
    victim.mkdir(parents=True)
    params = {
        "home": str(home),
        "outside": str(e.base / "outside.txt"),
        "cache": str(victim),
        "cache_parent": str(victim.parent),
        "port": e.listener.getsockname()[1],
    }
    e.cars, codes = {}, []
    for name, (body, _) in PROBES.items():
        code_dir = _probe_dir(e.base, name, body)
        _, car, code = make_order_car(e.base / "client", params=params, spec=f"{code_dir}:probe:main")
        e.cars[name] = car
        codes.append(str(code))
    _, e.honest_car, honest_code = make_order_car(e.base / "honest-client", params={"sleep": 0}, seed=7)
    e.evil = prepare_home(home, "evil", allow=[*codes, str(honest_code)])
    e.honest = TokenStore.for_home(home).issue("honest")
    limits = "memory_bytes=512M,processes=64,output_bytes=2M,cpu_seconds=60"
    e.node = start_node(home, "--task-limits", limits, "--max-runs", "2", "--max-queued", "32")
    yield e
    e.node.stop()
    e.listener.close()


def _submit(env: Env, car: bytes, token: str) -> str:
    r = httpx.post(f"{env.node.url}/orders", content=car, headers={**CAR, "Authorization": f"Bearer {token}"})
    assert r.status_code == 202, r.text
    return str(r.json()["run"])


def _invoice(env: Env, cid: Any) -> dict[str, Any]:
    return httpx.get(f"{env.node.url}/invoices/{cid}").json()["record"]  # type: ignore[no-any-return]


def test_every_escape_fails_and_the_node_keeps_serving_honestly(env: Env) -> None:
    home = env.node.home
    key = (home / "keys" / "node.key").read_bytes()
    allow_before = (home / "node" / "allow.txt").read_text()
    runs = {name: _submit(env, car, env.evil) for name, car in env.cars.items()}
    for name, run in runs.items():
        done = wait_run(env.node.url, run, timeout=600)
        assert done["status"] == "failed", f"probe {name} escaped: {done}"
        assert done["invoice"], (name, done.get("error"))
        invoice = _invoice(env, done["invoice"])
        assert PROBES[name][1] in invoice["error"], (name, invoice["error"])
        assert invoice["executor"]["sandbox"] == "bwrap" and invoice["executor"]["network"] == "off"
        log = httpx.get(f"{env.node.url}/ipfs/{invoice['log']['/']}").content
        assert key not in log
    with pytest.raises(BlockingIOError):
        env.listener.accept()  # no probe ever reached the loopback listener
    assert not (env.base / "outside.txt").exists()
    assert os.listdir(env.base / "cache") == ["victim"] and not os.listdir(env.base / "cache" / "victim")
    assert (home / "node" / "allow.txt").read_text() == allow_before
    assert not [p for p in (home / "work").iterdir() if p.name.startswith("task-")]
    # The node still serves, and another organization's run is right.
    honest = wait_run(env.node.url, _submit(env, env.honest_car, env.honest))
    assert honest["status"] == "succeeded", honest
    blocks = Repo.open(home).blocks
    files = {e.name: b"".join(cat(blocks, e.cid)) for e in ls(blocks, CID.decode(str(honest["output"])))}
    assert files == {"result.txt": b"seed=7 inputs=data\n"}
    recent = []  # each organization sees its own runs only: both, together
    for token in (env.evil, env.honest):
        auth = {"Authorization": f"Bearer {token}"}
        recent += httpx.get(f"{env.node.url}/orders", params={"limit": 1000}, headers=auth).json()["runs"]
    assert len(recent) == len(runs) + 1
    boms = {r["bom"] for r in recent if r.get("bom")}
    assert boms == {honest["bom"]}  # no probe got a BOM
    for bom in boms:
        assert httpx.get(f"{env.node.url}/boms/{bom}").json()["signature"] == "valid"


def test_networked_functions_are_refused_by_default(env: Env, tmp_path: Path) -> None:
    from cats_runtime.operations import Node, build_function

    code = _probe_dir(tmp_path, "net", "data = b'x'")
    with Node.open(tmp_path / "c") as node:
        record, _ = build_function(f"{code}:probe:main", node.store, network=True)
    assert record.network is True
    _, car, _ = make_order_car(tmp_path / "c", spec=f"{code}:probe:main", network=True)
    r = httpx.post(
        f"{env.node.url}/orders", content=car, headers={**CAR, "Authorization": f"Bearer {env.evil}"}
    )
    assert r.status_code == 403 and "refuses networked code" in r.json()["message"], r.text


def test_cats_run_probe_fails_with_the_reason(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code = _probe_dir(tmp_path, "key", PROBES["key"][0])
    data = tmp_path / "in.txt"
    data.write_text("x")
    command = shlex.join(
        [
            CATS,
            "--home",
            str(home),
            "run",
            "--function",
            f"{code}:probe:main",
            "--input",
            f"data={data}",
            "--param",
            f"home={home}",
        ]
    )
    env = {**os.environ, "CATS_HOME": str(home)}
    proc = subprocess.run(
        ["script", "-qec", command, "/dev/null"], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FileNotFoundError" in proc.stdout and "node.key" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout
