"""Deploy-time behaviour under Pulumi's mocks: what the engine, providers and clouds would do.

Each test models one thing `pulumi up` relies on and that the mocks alone would not refuse: the
await logic of pulumi-kubernetes, cloud load-balancer controllers, the scheduler's fit on a node
type, the clouds' add-ons and identities.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from iac_cases import PLANTS, build_node
from iac_harness import REPO, Built

from components import DEFAULT_NODE_SIZE, DEFAULT_RAY_SIZES, allocatable
from components._capacity import Capacity, parse_cpu, parse_memory
from components.plant.aks import noninteractive_kubeconfig, vault_name
from policies.offline import check_resources

SERVICE = "kubernetes:core/v1:Service"


@pytest.fixture(scope="module", params=sorted(PLANTS))
def node(request: pytest.FixtureRequest) -> Built:
    return build_node(request.param, example=True)


def _services(node: Built) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in node.of_type(SERVICE)}


def test_statefulset_governing_service_is_headless_and_named_plainly(node: Built) -> None:
    statefulset = node.one("kubernetes:apps/v1:StatefulSet").inputs["spec"]
    governing = statefulset["serviceName"]
    # A plain string: the StatefulSet does not wait on any Service's Output (no await cycle).
    assert isinstance(governing, str)
    service = _services(node)[governing]["spec"]
    # pulumi-kubernetes skips the endpoints await only for headless Services.
    assert service["clusterIP"] == "None"
    assert service["selector"] == statefulset["selector"]["matchLabels"]
    # The RPC API keeps its own ClusterIP Service.
    assert _services(node)["cats-kubo-rpc"]["spec"]["type"] == "ClusterIP"


def test_no_load_balancer_mixes_protocols(node: Built) -> None:
    for name, service in _services(node).items():
        spec = service["spec"]
        if spec.get("type") == "LoadBalancer":
            protocols = {p.get("protocol", "TCP") for p in spec["ports"]}
            assert len(protocols) == 1, f"{name} mixes {protocols}"
    swarm = {n: s for n, s in _services(node).items() if "swarm" in n}
    assert {p["protocol"] for s in swarm.values() for p in s["spec"]["ports"]} == {"TCP", "UDP"}


def test_eks_swarm_uses_an_nlb() -> None:
    services = _services(build_node("aws", example=True))
    annotations = services["cats-kubo-swarm-udp"]["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-type"] == "nlb"


def test_raycluster_is_awaited(node: Built) -> None:
    cluster = node.one("kubernetes:ray.io/v1:RayCluster").inputs
    assert cluster["metadata"]["annotations"]["pulumi.com/waitFor"] == "jsonpath={.status.state}=ready"


def test_node_home_is_persistent_and_not_awaited_before_its_pod(node: Built) -> None:
    deployment = node.one("kubernetes:apps/v1:Deployment").inputs["spec"]
    pod = deployment["template"]["spec"]
    claim = next(v for v in pod["volumes"] if v["name"] == "home")["persistentVolumeClaim"]["claimName"]
    assert isinstance(claim, str)
    pvc = node.one("kubernetes:core/v1:PersistentVolumeClaim").inputs
    assert pvc["metadata"]["name"] == claim
    # WaitForFirstConsumer claims bind only once the pod is scheduled.
    assert pvc["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    container = pod["containers"][0]
    home = {e["name"]: e.get("value") for e in container["env"]}["CATS_HOME"]
    assert {"name": "home", "mountPath": home} in container["volumeMounts"]
    assert deployment["strategy"] == {"type": "Recreate"}
    # Nothing reads CATS_KUBO_RPC: the variable is not set as if it configured anything.
    assert "CATS_KUBO_RPC" not in {e["name"] for e in container["env"]}


def test_ray_pods_may_reach_kubo_rpc(node: Built) -> None:
    ray = node.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]
    worker_labels = ray["workerGroupSpecs"][0]["template"]["metadata"]["labels"]
    policy = node.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]
    rpc_rule = next(r for r in policy["ingress"] if any(p["port"] == 5001 for p in r["ports"]))
    selectors = [peer["podSelector"]["matchLabels"] for peer in rpc_rule["from"]]
    assert any(worker_labels.items() >= sel.items() for sel in selectors)


def test_ray_workers_are_hardened(node: Built) -> None:
    worker = node.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]["workerGroupSpecs"][0]
    pod = worker["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # A read-only root still needs a writable /tmp for Ray's session directory.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert "runtimeClassName" not in pod


def test_runtime_class_is_settable() -> None:
    built = build_node("gcp", example=True, ray_worker_runtime_class="gvisor")
    worker = built.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]["workerGroupSpecs"][0]
    assert worker["template"]["spec"]["runtimeClassName"] == "gvisor"


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_default_ray_pods_fit_the_default_node_type(cloud: str) -> None:
    capacity = allocatable(DEFAULT_NODE_SIZE[cloud])
    assert capacity is not None
    worker = Capacity(
        parse_cpu(DEFAULT_RAY_SIZES["worker_cpu"]), parse_memory(DEFAULT_RAY_SIZES["worker_memory"])
    )
    assert capacity.fits(worker)
    # The old default (4 CPU / 16Gi) could never be scheduled on a 4 vCPU / 16 GiB node.
    assert not capacity.fits(Capacity(4000, parse_memory("16Gi")))
    built = build_node(cloud, example=True)
    fit = [v for v in check_resources(built.resources) if v.policy == "pods-fit-node-type"]
    assert not fit


def test_sizes_from_the_stack_are_checked_against_the_node_type() -> None:
    built = build_node("aws", example=True, ray_worker_cpu="7", ray_worker_memory="28Gi")
    worker = built.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]["workerGroupSpecs"][0]
    assert worker["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "7",
        "memory": "28Gi",
    }
    fit = [v for v in check_resources(built.resources) if v.policy == "pods-fit-node-type"]
    assert fit and "Ray worker group" in fit[0].message
    bigger = {**PLANTS["aws"], "node_size": "m6i.2xlarge"}
    ok = build_node("aws", example=True, plant=bigger, ray_worker_cpu="7", ray_worker_memory="28Gi")
    assert not [v for v in check_resources(ok.resources) if v.policy == "pods-fit-node-type"]


def test_gpu_workers() -> None:
    built = build_node("aws", example=True, ray_worker_gpus=1)
    worker = built.one("kubernetes:ray.io/v1:RayCluster").inputs["spec"]["workerGroupSpecs"][0]
    assert worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # m6i nodes have no GPU: the pod would never schedule.
    assert [v for v in check_resources(built.resources) if v.policy == "pods-fit-node-type"]


def test_eks_builds_vpc_with_nat_when_no_subnets_are_given() -> None:
    plant = {k: v for k, v in PLANTS["aws"].items() if k != "subnet_ids"}
    built = build_node("aws", example=True, plant=plant)
    assert built.one("aws:ec2/vpc:Vpc")
    assert built.one("aws:ec2/natGateway:NatGateway")
    private = [r for r in built.of_type("aws:ec2/subnet:Subnet") if "private" in r.name]
    assert len(private) == 2 and all(r.inputs["mapPublicIpOnLaunch"] is False for r in private)
    routes = built.one("aws:ec2/routeTable:RouteTable", "cats-plant-cluster-private").inputs["routes"]
    assert routes[0]["natGatewayId"]
    nodes = built.one("aws:eks/nodeGroup:NodeGroup").inputs
    assert nodes["subnetIds"] == [f"{r.name}-id" for r in private]


def test_eks_has_oidc_ebs_csi_default_storage_class_and_autoscaler() -> None:
    built = build_node("aws", example=True)
    oidc = built.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs
    assert oidc["url"].startswith("https://") and oidc["clientIdLists"] == ["sts.amazonaws.com"]
    addons = {r.inputs["addonName"]: r.inputs for r in built.of_type("aws:eks/addon:Addon")}
    assert addons["vpc-cni"]["resolveConflictsOnCreate"] == "OVERWRITE"
    ebs = addons["aws-ebs-csi-driver"]
    roles = {r.name: r.inputs for r in built.of_type("aws:iam/role:Role")}
    trust = json.loads(roles["cats-plant-cluster-ebs-csi"]["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert "system:serviceaccount:kube-system:ebs-csi-controller-sa" in condition.values()
    assert ebs["serviceAccountRoleArn"]
    classes = built.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
    defaults = [
        c
        for c in classes
        if c.inputs["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
    ]
    assert [c.inputs["provisioner"] for c in defaults] == ["ebs.csi.aws.com"]
    assert defaults[0].inputs["parameters"]["encrypted"] == "true"
    assert defaults[0].inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    autoscaler = built.one("kubernetes:helm.sh/v3:Release", "cats-plant-cluster-autoscaler").inputs
    assert autoscaler["chart"] == "cluster-autoscaler" and autoscaler["version"]
    assert autoscaler["values"]["autoDiscovery"]["clusterName"] == "cats-plant-cluster-test"
    # Region wired into an explicit provider, not read from ambient aws:region.
    assert built.one("pulumi:providers:aws").inputs["region"] == "us-east-1"
    template = built.one("aws:ec2/launchTemplate:LaunchTemplate").inputs
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1  # pods cannot reach IMDS


def test_gke_has_nat_dedicated_node_account_and_total_counts() -> None:
    built = build_node("gcp", example=True)
    assert built.one("gcp:compute/routerNat:RouterNat").inputs["sourceSubnetworkIpRangesToNat"]
    account = built.one("gcp:serviceaccount/account:Account")
    pool = built.one("gcp:container/nodePool:NodePool").inputs
    assert pool["nodeConfig"]["serviceAccount"] == f"{account.name}@cats-mock.iam.gserviceaccount.com"
    assert "https://www.googleapis.com/auth/cloud-platform" not in pool["nodeConfig"]["oauthScopes"]
    roles = {r.inputs["role"] for r in built.of_type("gcp:projects/iAMMember:IAMMember")}
    assert "roles/editor" not in roles and "roles/logging.logWriter" in roles
    cluster = built.one("gcp:container/cluster:Cluster").inputs
    assert cluster["deletionProtection"] is False
    assert built.one("pulumi:providers:gcp").inputs["region"] == "europe-west4"


def test_gke_deletion_protection_is_settable() -> None:
    plant = {**PLANTS["gcp"], "deletion_protection": True}
    built = build_node("gcp", example=True, plant=plant)
    assert built.one("gcp:container/cluster:Cluster").inputs["deletionProtection"] is True


def test_aks_grants_the_deployer_and_kubeconfig_is_noninteractive() -> None:
    built = build_node("azure", example=True)
    assignments = {r.name: r.inputs for r in built.of_type("azure-native:authorization:RoleAssignment")}
    admin = assignments["cats-plant-cluster-cluster-admin"]
    assert admin["roleDefinitionId"].endswith("b1ff04bb-8a4e-4dc4-8eb5-8693396c8b89")
    assert admin["principalId"] == "00000000-0000-0000-0000-000000000000"  # the client config's objectId
    kubeconfig = yaml.safe_load(built.outputs["kubeconfig"])
    exec_spec = kubeconfig["users"][0]["user"]["exec"]
    assert "devicecode" not in exec_spec["args"]
    assert exec_spec["args"][-2:] == ["--login", "azurecli"] and exec_spec["interactiveMode"] == "Never"
    vault = built.one("azure-native:keyvault:Vault").inputs["vaultName"]
    assert 3 <= len(vault) <= 24
    assert built.one("pulumi:providers:azure-native").inputs["location"] == "westeurope"


def test_aks_custom_subnet_gets_network_contributor() -> None:
    subnet = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/n"
    built = build_node("azure", example=True, plant={**PLANTS["azure"], "subnet_ids": [subnet]})
    assignments = {r.name: r.inputs for r in built.of_type("azure-native:authorization:RoleAssignment")}
    network = assignments["cats-plant-cluster-subnet-network"]
    assert network["scope"] == subnet
    assert network["roleDefinitionId"].endswith("4d97b98b-1d4f-4787-a291-c67834d212e7")


def test_vault_names_stay_within_limits() -> None:
    assert len(vault_name("a" * 100, "b" * 100, "cats-plant-cluster")) <= 24
    assert vault_name("p", "s", "n") != vault_name("p", "t", "n")


def test_kubeconfig_conversion_refuses_a_kubeconfig_without_kubelogin() -> None:
    with pytest.raises(ValueError, match="without a kubelogin user"):
        noninteractive_kubeconfig("apiVersion: v1\nusers: []\n")


def test_catnode_outputs_keep_config_keys(tmp_path: Path) -> None:
    # The engine replaces a component's state by its registered outputs and stack rules see that
    # state; the offline runner models it, so a plaintext secret must still be caught from them.
    project = tmp_path / "node"
    shutil.copytree(
        REPO,
        project,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "tests", "__pycache__", "stacks", ".*_cache", ".hypothesis", "node_modules"
        ),
    )
    (project / "stacks").mkdir()
    stack = yaml.safe_load((REPO / "stacks" / "Pulumi.hooli.yaml").read_text())
    stack["config"]["cats:adminToken"] = "plain"
    (project / "stacks" / "Pulumi.t.yaml").write_text(yaml.safe_dump(stack))
    # One stack per process: the mocks are process-wide.
    completed = subprocess.run(
        [sys.executable, "-m", "policies.offline", "--project", str(project), "--stack", "t", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    caught = [
        v
        for v in json.loads(completed.stdout)["violations"]
        if v["policy"] == "no-plaintext-secret-config" and v["type"] == "cats:index:CatNode"
    ]
    assert caught and "cats:adminToken" in caught[0]["message"]


def test_mock_kubeconfig_is_what_aks_returns() -> None:
    from policies.offline import _AKS_EXEC_KUBECONFIG

    config = json.loads(base64.b64decode(_AKS_EXEC_KUBECONFIG))
    assert "devicecode" in config["users"][0]["user"]["exec"]["args"]


def test_gke_runs_exactly_the_pinned_kubernetes_version() -> None:
    # A release channel (GKE's default) upgrades masters and nodes on Google's schedule and
    # requires node auto-upgrade: the pinned version would not be the running one.
    built = build_node("gcp", example=True)
    cluster = built.one("gcp:container/cluster:Cluster").inputs
    pool = built.one("gcp:container/nodePool:NodePool").inputs
    pinned = PLANTS["gcp"]["kubernetes_version"]
    assert cluster["minMasterVersion"] == pinned
    assert cluster["releaseChannel"] == {"channel": "UNSPECIFIED"}
    assert pool["version"] == pinned
    assert pool["management"]["autoUpgrade"] is False
    assert pool["management"]["autoRepair"] is True


def test_the_kuberay_operator_image_is_pinned_by_digest_in_the_chart_values() -> None:
    # The chart's default is `quay.io/kuberay/operator:v1.7.0`, a tag: the values pin the digest.
    built = build_node("existing", example=True)
    [release] = [
        r
        for r in built.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs.get("chart") == "kuberay-operator"
    ]
    image = release.inputs["values"]["image"]
    rendered = f"{image['repository']}:{image['tag']}"  # the chart's template: "<repository>:<tag>"
    assert re.fullmatch(r"quay\.io/kuberay/operator:v1\.7\.0@sha256:[0-9a-f]{64}", rendered), rendered
    digest = rendered.rsplit(":", 1)[1]
    assert digest != digest[:16] * 4, "not the placeholder"
