"""Children and key inputs of every component, for every cloud, under Pulumi mocks."""

from __future__ import annotations

from typing import Any

import pytest
from iac_cases import CIDRS, CLUSTER_TYPES, PLANTS, build_node, node_args
from iac_harness import Built, build

from components import (
    DEFAULT_KUBO_IMAGE,
    DEFAULT_RAY_IMAGE,
    KUBERAY_CHART_REPO,
    NODE_LABELS,
    RAY_LABELS,
    CatNode,
)


@pytest.fixture(scope="module", params=sorted(PLANTS))
def built(request: pytest.FixtureRequest) -> tuple[str, Built]:
    return request.param, build_node(request.param)


def test_components_and_children(built: tuple[str, Built]) -> None:
    cloud, node = built
    components = {r.type for r in node.resources if not r.custom}
    assert {
        "cats:index:CatNode",
        "cats:index:Plant",
        CLUSTER_TYPES[cloud],
        "cats:index:KubeRay",
        "cats:index:Kubo",
    } <= components
    # Children are named after their parent component.
    assert all(r.name.startswith("cats-") for r in node.resources if r.type != "cats:index:CatNode")
    assert node.one("pulumi:providers:kubernetes")


def test_outputs(built: tuple[str, Built]) -> None:
    _, node = built
    assert node.outputs["ray"] == "http://cats-ray-head-svc.cats.svc:8265"
    assert node.outputs["kubo"] == "http://cats-kubo-rpc.cats.svc:5001"
    assert node.outputs["kubeconfig_secret"] is True
    assert node.outputs["kubeconfig"]


def test_eks_inputs() -> None:
    node = build_node("aws")
    cluster = node.one("aws:eks/cluster:Cluster").inputs
    assert cluster["vpcConfig"]["publicAccessCidrs"] == CIDRS
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster["encryptionConfig"]["provider"]["keyArn"].startswith("arn:")
    assert {"api", "audit"} <= set(cluster["enabledClusterLogTypes"])
    assert node.one("aws:kms/key:Key").inputs["enableKeyRotation"] is True
    scaling = node.one("aws:eks/nodeGroup:NodeGroup").inputs["scalingConfig"]
    assert (scaling["minSize"], scaling["maxSize"]) == (1, 7)
    assert node.one("aws:eks/nodeGroup:NodeGroup").inputs["subnetIds"] == ["subnet-a", "subnet-b"]
    # Subnets given: the organization's network, no VPC of our own.
    assert not node.of_type("aws:ec2/vpc:Vpc")
    cni = node.one("aws:eks/addon:Addon", "cats-plant-cluster-vpc-cni").inputs
    assert '"enableNetworkPolicy": "true"' in cni["configurationValues"]


def test_gke_inputs() -> None:
    node = build_node("gcp")
    cluster = node.one("gcp:container/cluster:Cluster").inputs
    assert cluster["removeDefaultNodePool"] is True
    assert cluster["privateClusterConfig"]["enablePrivateNodes"] is True
    assert [b["cidrBlock"] for b in cluster["masterAuthorizedNetworksConfig"]["cidrBlocks"]] == CIDRS
    assert cluster["databaseEncryption"]["state"] == "ENCRYPTED"
    assert cluster["databaseEncryption"]["keyName"]
    assert "APISERVER" in cluster["loggingConfig"]["enableComponents"]
    assert cluster["datapathProvider"] == "ADVANCED_DATAPATH"
    pool = node.one("gcp:container/nodePool:NodePool").inputs
    # Totals over the region's zones, never per-zone counts.
    assert (pool["autoscaling"]["totalMinNodeCount"], pool["autoscaling"]["totalMaxNodeCount"]) == (0, 7)
    assert "maxNodeCount" not in pool["autoscaling"]
    grant = node.one("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember").inputs
    assert (
        grant["member"]
        == "serviceAccount:service-123456789012@container-engine-robot.iam.gserviceaccount.com"
    )


def test_aks_inputs() -> None:
    node = build_node("azure")
    cluster = node.one("azure-native:containerservice:ManagedCluster").inputs
    assert cluster["apiServerAccessProfile"]["authorizedIPRanges"] == CIDRS
    assert cluster["securityProfile"]["azureKeyVaultKms"]["enabled"] is True
    assert cluster["disableLocalAccounts"] is True
    assert cluster["networkProfile"]["networkPolicy"] == "azure"
    # Only the System pool is inline; the workload pool is its own resource.
    assert [p["mode"] for p in cluster["agentPoolProfiles"]] == ["System"]
    pool = node.one("azure-native:containerservice:AgentPool").inputs
    assert (pool["minCount"], pool["maxCount"], pool["enableAutoScaling"]) == (1, 7, True)
    assert pool["enableNodePublicIP"] is False
    assert node.one("azure-native:monitor:DiagnosticSetting").inputs["logs"]


def test_existing_creates_no_cloud_resources() -> None:
    node = build_node("existing")
    assert not {t for t in node.types() if t.split(":")[0] in ("aws", "gcp", "azure-native")}
    assert node.outputs["cluster"] == "onprem"


def test_kuberay_inputs(built: tuple[str, Built]) -> None:
    _, node = built
    release = node.one("kubernetes:helm.sh/v3:Release", "cats-ray-operator").inputs
    assert (release["chart"], release["version"]) == ("kuberay-operator", "1.7.0")
    assert release["repositoryOpts"]["repo"] == KUBERAY_CHART_REPO
    assert release["namespace"] == "kuberay-system"
    ray = node.one("kubernetes:ray.io/v1:RayCluster").inputs
    spec = ray["spec"]
    assert ray["metadata"]["name"] == "cats-ray"
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert spec["authOptions"] == {"mode": "token", "secretName": "cats-secrets"}
    assert spec["enableInTreeAutoscaling"] is True
    group = spec["workerGroupSpecs"][0]
    assert (group["minReplicas"], group["maxReplicas"]) == (1, 9)
    templates = [spec["headGroupSpec"]["template"], group["template"]]
    for container in (c for t in templates for c in t["spec"]["containers"]):
        assert container["image"] == DEFAULT_RAY_IMAGE
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}


def test_kubo_inputs(built: tuple[str, Built]) -> None:
    _, node = built
    services = {
        r.inputs["metadata"]["name"]: r.inputs["spec"] for r in node.of_type("kubernetes:core/v1:Service")
    }
    assert services["cats-kubo-rpc"]["type"] == "ClusterIP"
    assert [p["port"] for p in services["cats-kubo-rpc"]["ports"]] == [5001]
    assert services["cats-kubo-gateway"]["type"] == "ClusterIP"
    assert services["cats-kubo-swarm"]["type"] == "LoadBalancer"
    assert [(p["port"], p["protocol"]) for p in services["cats-kubo-swarm"]["ports"]] == [(4001, "TCP")]
    assert [(p["port"], p["protocol"]) for p in services["cats-kubo-swarm-udp"]["ports"]] == [(4001, "UDP")]
    assert services["cats-node"]["type"] == "ClusterIP"
    policy = node.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]
    rpc_rule = next(r for r in policy["ingress"] if any(p["port"] == 5001 for p in r["ports"]))
    assert rpc_rule["from"] == [
        {"podSelector": {"matchLabels": NODE_LABELS}},
        {"podSelector": {"matchLabels": RAY_LABELS}},
    ]
    statefulset = node.one("kubernetes:apps/v1:StatefulSet").inputs["spec"]
    container = statefulset["template"]["spec"]["containers"][0]
    assert container["image"] == DEFAULT_KUBO_IMAGE
    assert {"name": "IPFS_PROFILE", "value": "server"} in container["env"]
    assert container["livenessProbe"]["exec"]["command"] == [
        "ipfs",
        "--api=/ip4/127.0.0.1/tcp/5001",
        "diag",
        "healthy",
    ]
    assert statefulset["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    deployment = node.one("kubernetes:apps/v1:Deployment").inputs["spec"]
    assert deployment["template"]["metadata"]["labels"].items() >= NODE_LABELS.items()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"plant": {**PLANTS["aws"], "api_allowed_cidrs": ["0.0.0.0/0"]}}, "apiAllowedCidrs.*whole internet"),
        ({"plant": {**PLANTS["gcp"], "api_allowed_cidrs": []}}, "apiAllowedCidrs: expected at least one"),
        (
            {"plant": {**PLANTS["azure"], "api_allowed_cidrs": ["not-a-cidr"]}},
            "apiAllowedCidrs: expected a CIDR",
        ),
        ({"plant": {**PLANTS["aws"], "node_count_max": 500}}, "nodeCountMax: expected at most 50"),
        ({"plant": {**PLANTS["gcp"], "node_count_min": 5, "node_count_max": 2}}, "nodeCountMin/nodeCountMax"),
        ({"plant": {**PLANTS["aws"], "subnet_ids": ["subnet-a"]}}, "subnetIds"),
        ({"plant": {"cloud": "mars"}}, "cloud: expected one of"),
        ({"plant": {"cloud": "existing", "cluster_name": "x"}}, "kubeconfig: expected"),
        ({"ray_image": "rayproject/ray:2.52.0"}, "rayImage: expected an image pinned"),
        ({"kubo_image": "ipfs/kubo:latest"}, "kuboImage: expected an image pinned"),
        ({"node_image": "cats:latest"}, "nodeImage: expected an image pinned"),
        ({"ray_worker_max": 10_000}, "workerMax: expected at most"),
        ({"kubo_swarm_service_type": "ClusterIP"}, "kuboSwarmServiceType"),
        ({"ray_worker_cpu": "four"}, "rayWorkerCpu: expected a CPU quantity"),
        ({"ray_head_memory": "8 gigs"}, "rayHeadMemory: expected a memory quantity"),
        ({"ray_worker_gpus": 99}, "rayWorkerGpus"),
        ({"node_replicas": 2}, "nodeReplicas: expected 1"),
        ({"namespace": "Not_A_Label"}, "namespace: expected a lowercase DNS label"),
    ],
)
def test_inputs_validated_early(change: dict[str, Any], match: str) -> None:
    base = node_args("aws")
    with pytest.raises(ValueError, match=match):
        build(lambda: {"ray": CatNode("cats", {**base, **change}).ray_jobs_address})  # type: ignore[typeddict-item]
