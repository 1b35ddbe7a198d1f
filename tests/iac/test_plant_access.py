"""How redeploy reaches a Plant: kubectl port-forwards with the stack's kubeconfig, blocks pushed to Kubo.

No cluster here: the forward is checked up to the real kubectl talking to the API server named in
the kubeconfig it was given; the push runs against the real IPFS RPC daemon of tests/cas.
"""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cas"))

from jsipfs_daemon import Daemon, jsipfs  # noqa: F401  (pytest fixture)

from cats_runtime.cas import CID, MemoryBlockStore, _unixfs
from cats_runtime.cas._kubo import KuboBlockStore, KuboClient
from cats_runtime.cas._walk import walk
from cats_runtime.errors import BlockNotFoundError, InvalidInputError, ProvisionError
from cats_runtime.execution import KuboPush, SourceDesc, open_source, push_blocks
from cats_runtime.execution._jobs import source_from_payload
from cats_runtime.execution._portforward import (
    PortForward,
    ServiceTarget,
    forward_argv,
    require_loopback,
    service_target,
)
from cats_runtime.execution._provisioner import outputs_from
from cats_runtime.operations._redeploy import plant_access

RAY = "http://cats-ray-head-svc.cats.svc:8265"
KUBO = "http://cats-kubo-rpc.cats.svc:5001"


class _Out:
    """The Automation API's OutputValue shape (value, secret)."""

    def __init__(self, value: str, secret: bool = False) -> None:
        self.value = value
        self.secret = secret


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kubeconfig(port: int) -> str:
    return f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: not-a-real-token}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""


# -- what is forwarded, to which Service and port, from which kubeconfig -------------------------
def test_the_stack_outputs_name_the_services_forwarded() -> None:
    assert service_target(RAY, "rayJobsAddress") == ServiceTarget("cats", "cats-ray-head-svc", 8265)
    assert service_target(KUBO, "kuboRpcAddress") == ServiceTarget("cats", "cats-kubo-rpc", 5001)
    assert service_target("http://x.ns.svc.cluster.local:10", "a") == ServiceTarget("ns", "x", 10)
    for bad in ("http://203.0.113.9:8265", "http://cats-ray-head-svc:8265", "http://a.b.svc"):
        with pytest.raises(ProvisionError, match="expected the stack's rayJobsAddress as http://<service>"):
            service_target(bad, "rayJobsAddress")


def test_forward_argv_binds_loopback_with_the_given_kubeconfig(tmp_path: Path) -> None:
    argv = forward_argv("/usr/bin/kubectl", tmp_path / "kc", ServiceTarget("cats", "cats-kubo-rpc", 5001))
    assert argv == [
        "/usr/bin/kubectl",
        "--kubeconfig",
        str(tmp_path / "kc"),
        "--namespace",
        "cats",
        "port-forward",
        "--address",
        "127.0.0.1",
        "service/cats-kubo-rpc",
        ":5001",
    ]


def test_the_kubeconfig_output_is_kept_for_forwarding_but_never_in_raw() -> None:
    plant = outputs_from(
        {"rayJobsAddress": _Out(RAY), "kuboRpcAddress": _Out(KUBO), "kubeconfig": _Out("kc", secret=True)}
    )
    assert plant.kubeconfig == "kc"
    assert "kubeconfig" not in plant.raw and "kc" not in repr(plant)
    # A backend that does not flag it secret still does not get it recorded.
    assert "kubeconfig" not in outputs_from({"kubeconfig": _Out("kc")}).raw


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_real_kubectl_forwards_through_the_stacks_api_server(tmp_path: Path) -> None:
    # The API server the kubeconfig names is a closed loopback port: kubectl fails there, which
    # shows the forward went to that server (not the ambient ~/.kube/config) and that the
    # failure is one line, with the kubeconfig file removed afterwards.
    port = _free_port()
    forward = PortForward(_kubeconfig(port), ServiceTarget("cats", "cats-ray-head-svc", 8265), timeout=60)
    with pytest.raises(ProvisionError) as info:
        forward.__enter__()
    message = str(info.value)
    assert message.startswith(
        "kubectl port-forward to service/cats-ray-head-svc:8265 in namespace cats failed:"
    )
    assert f"127.0.0.1:{port}" in message and "\n" not in message
    assert forward._tmp is None and forward._process is None  # kubeconfig file and kubectl gone


def test_without_kubectl_one_line_error() -> None:
    forward = PortForward("kc", ServiceTarget("cats", "cats-ray-head-svc", 8265), which=lambda _n: None)
    with pytest.raises(ProvisionError, match="kubectl is not on PATH"):
        forward.__enter__()


# -- refusal of public addresses ----------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:8265",
        "http://203.0.113.7:8265",
        "http://ray.example.com:8265",
        "http://cats-ray-head-svc.cats.svc:8265",
        "http://0.0.0.0:8265",
        "http://[::]:8265",
        "http://[2001:db8::1]:8265",
    ],
)
def test_public_or_in_cluster_addresses_are_refused(url: str) -> None:
    with pytest.raises(InvalidInputError, match="expected the Ray Jobs address on a loopback address"):
        require_loopback(url, "the Ray Jobs address")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1", "http://127.3.4.5:2", "http://[::1]:3", "http://localhost:4"]
)
def test_loopback_addresses_are_accepted(url: str) -> None:
    assert require_loopback(url, "x") == url


def test_plant_access_refuses_a_public_override_before_forwarding() -> None:
    plant = outputs_from({"rayJobsAddress": _Out(RAY), "kuboRpcAddress": _Out(KUBO)})
    public = plant_access(plant, ray_address="http://203.0.113.7:8265", which=lambda _n: None)
    with pytest.raises(InvalidInputError, match="loopback"), public:
        pass
    with (
        pytest.raises(ProvisionError, match="exported no kubeconfig"),
        plant_access(plant, which=lambda _n: None),
    ):
        pass


# -- blocks pushed to the Plant's Kubo, read back by the job ------------------------------------
@pytest.fixture(scope="module")
def kubo(jsipfs: Daemon) -> Iterator[KuboClient]:  # noqa: F811
    with KuboClient(jsipfs.api_url, timeout=30) as client:
        yield client


def _order_blocks(tmp_path: Path) -> tuple[MemoryBlockStore, list[CID]]:
    store = MemoryBlockStore()
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text(f"def main(ctx):\n    return {tmp_path.name!r}\n")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"{i}.txt").write_bytes(f"{tmp_path} {i}\n".encode() * (1 + 40000 * i))  # multi-chunk
    roots = [_unixfs.add_path(code, store).cid, _unixfs.add_path(data, store).cid]
    return store, roots


def test_push_imports_the_closure_and_the_job_reads_it_from_kubo(kubo: KuboClient, tmp_path: Path) -> None:
    store, roots = _order_blocks(tmp_path)
    blocks = [b for r in roots for b in walk(store, r)]
    assert not any(KuboBlockStore(kubo).has(b.cid) for b in blocks), "content already on the daemon"
    result = push_blocks(store, roots, kubo)
    assert sorted(result.roots) == sorted(roots) and not result.pin_errors
    assert set(kubo.pin_ls(type="recursive")) >= set(roots)
    # The job side: the payload names the in-cluster Kubo; workers read every block, verified.
    desc, shipped = source_from_payload({"source": {"kind": "kubo", "location": kubo.base_url}}, tmp_path)
    assert desc == SourceDesc("kubo", kubo.base_url) and shipped is None
    source = open_source(desc)
    assert isinstance(source, KuboBlockStore)
    try:
        for block in blocks:
            assert source.get(block.cid) == block.data
    finally:
        source.client.close()


def test_push_of_an_incomplete_closure_fails_before_kubo_gets_anything(
    kubo: KuboClient, tmp_path: Path
) -> None:
    store, roots = _order_blocks(tmp_path)
    leaf = [b for b in walk(store, roots[1])][-1]
    partial = MemoryBlockStore()
    partial.put_many(b for r in roots for b in walk(store, r) if b.cid != leaf.cid)
    with pytest.raises(BlockNotFoundError):
        push_blocks(partial, roots, kubo)
    assert not KuboBlockStore(kubo).has(roots[1])


def test_jobs_executor_names_the_in_cluster_kubo(tmp_path: Path) -> None:
    from cats_runtime.execution import JobsExecutor

    push = KuboPush("http://127.0.0.1:1", KUBO)
    executor = JobsExecutor("http://127.0.0.1:2", MemoryBlockStore(), kubo=push)
    assert executor.kubo == push
