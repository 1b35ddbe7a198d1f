"""`cats node serve` start-up failures as a person and a script meet them (real processes): one
line, exit 10, and nothing announced as serving; and the node's OpenAPI document is clean."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nodeproc import NodeProcess, free_port, start_node
from terminal import MODES, Mode, assert_fails, cats


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = start_node(tmp_path_factory.mktemp("served") / "home")
    try:
        yield node
    finally:
        node.stop()


@pytest.mark.parametrize("mode", MODES)
def test_a_port_in_use_is_one_line_exit_10_and_nothing_is_created(tmp_path: Path, mode: Mode) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        home = tmp_path / "home"
        result = cats(mode, "node", "serve", "--port", str(port), home=home, timeout=120)
    line = assert_fails(result, 10, f"expected to listen on 127.0.0.1:{port}, found it in use")
    assert "CAT Node" not in result.err and " at http://" not in result.err, line
    assert not home.exists()  # the port is checked before the home is touched


@pytest.mark.parametrize("mode", MODES)
def test_a_home_another_node_serves_is_one_line_exit_10(served: NodeProcess, mode: Mode) -> None:
    port = free_port()
    result = cats(mode, "node", "serve", "--port", str(port), home=served.home, timeout=120)
    assert_fails(result, 10, f"expected no other node serving {served.home}")
    assert "CAT Node" not in result.err and " at http://" not in result.err
    with pytest.raises(httpx.ConnectError):  # and it let go of the port it had bound
        httpx.get(f"http://127.0.0.1:{port}/node", timeout=5)
    assert httpx.get(f"{served.url}/node", timeout=10).status_code == 200  # the first node is unharmed


def test_openapi_has_unique_operation_ids_and_logs_no_warning(served: NodeProcess) -> None:
    response = httpx.get(f"{served.url}/openapi.json", timeout=30)
    assert response.status_code == 200
    ids = [
        op["operationId"]
        for methods in response.json()["paths"].values()
        for op in methods.values()
        if isinstance(op, dict) and "operationId" in op
    ]
    assert len(ids) == len(set(ids)), ids
    assert {"get_ipfs", "head_ipfs"} <= set(ids)
    # The document is built on this first request; a duplicate would have been logged by now.
    assert httpx.get(f"{served.url}/node", timeout=10).status_code == 200
    assert "Duplicate Operation ID" not in served.output()
    assert "Warning" not in served.output()


def test_port_0_binds_a_free_port_that_the_announcement_and_the_port_file_name(served: NodeProcess) -> None:
    # start_node asked for --port 0: the port it uses came from the node process itself.
    assert served.args == () and served.port > 0
    announced = f"at http://127.0.0.1:{served.port} "
    assert announced in served.output()
    node = httpx.get(f"{served.url}/node", timeout=10)
    assert node.status_code == 200
    assert not list(served.home.parent.glob(f".{served.home.name}-port-*"))  # read and removed


def test_the_port_file_appears_only_once_the_node_serves(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    port_file = tmp_path / "port"
    cats_bin = str(Path(sys.executable).with_name("cats"))
    env = {**os.environ, "CATS_HOME": str(home)}
    proc = subprocess.Popen(
        [cats_bin, "--home", str(home), "node", "serve", "--port", "0", "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None, f"the node exited with {proc.returncode}"
            assert time.monotonic() < deadline, "no port file after 60 s"
            time.sleep(0.1)
        port = int(port_file.read_text())
        # The socket is listening when the file appears: the first request is served, no retry.
        assert httpx.get(f"http://127.0.0.1:{port}/node", timeout=30).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
