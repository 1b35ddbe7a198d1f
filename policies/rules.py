"""The CAT Node policy rules, importable without starting a policy-pack server.

Each rule is a ``pulumi_policy`` policy object, so ``pulumi preview --policy-pack policies`` runs
them against the engine's view of every resource, and :mod:`policies.offline` runs the same objects
against the resources a mocked program registers. Properties arrive with their schema (camelCase)
names in both cases; numbers may arrive as floats.

Mandatory rules block a deployment; advisory rules only warn:

===============================  ==========  ====================================================
rule                             level       guards against
===============================  ==========  ====================================================
kubo-rpc-cluster-only            mandatory   Kubo's admin RPC (5001) on a LoadBalancer, NodePort,
                                             external IP or Ingress
kubo-rpc-network-policy          mandatory   Kubo pods whose RPC port any pod may reach
ray-ports-private                mandatory   Ray dashboard/Jobs (8265), client (10001), GCS (6379)
                                             reachable from outside the cluster (remote code exec)
images-pinned-by-digest          mandatory   container images that can change under the same name
container-resources              mandatory   containers without CPU and memory requests and limits
api-endpoint-restricted          mandatory   EKS/GKE/AKS API servers open to 0.0.0.0/0
bounded-autoscaling              mandatory   node pools / Ray worker groups without a max, or above
                                             the cap
no-plaintext-secret-config       mandatory   secret-looking stack config keys stored in plaintext
placeholder-image-digest         mandatory   the shipped placeholder digests left in place (only
                                             the shipped example stacks are exempt)
pod-host-access                  mandatory   host network/PID/IPC, host ports, privileged containers
ray-auth-required                mandatory   RayClusters without token authentication
pods-fit-node-type               mandatory   pods whose requests no node of the stack's pools fits
secrets-encryption               advisory    cluster secrets not envelope-encrypted with a KMS key
control-plane-logging            advisory    no audit trail of the Kubernetes API
private-nodes                    advisory    worker nodes with public IPs
node-disk-encryption             advisory    EKS node volumes not encrypted, AKS without host
                                             encryption
example-stack                    advisory    a shipped example stack (placeholder digests) checked
===============================  ==========  ====================================================
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from components._capacity import Capacity, allocatable, parse_cpu, parse_memory

__all__ = [
    "DEFAULT_MAX_NODES",
    "DEFAULT_MAX_RAY_WORKERS",
    "POLICIES",
    "RESOURCE_POLICIES",
    "STACK_POLICIES",
    "api_endpoint_restricted",
    "bounded_autoscaling",
    "container_resources",
    "control_plane_logging",
    "example_stack",
    "node_disk_encryption",
    "pod_host_access",
    "pods_fit_node_type",
    "ray_auth_required",
    "images_pinned_by_digest",
    "kubo_rpc_cluster_only",
    "kubo_rpc_network_policy",
    "no_plaintext_secret_config",
    "placeholder_image_digest",
    "plaintext_secret_keys",
    "private_nodes",
    "ray_ports_private",
    "secrets_encryption",
]

DEFAULT_MAX_NODES = 50
DEFAULT_MAX_RAY_WORKERS = 200

_DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
_KUBO_RPC_PORTS: frozenset[int | str] = frozenset({5001, "rpc", "api"})
_RAY_PORTS: frozenset[int | str] = frozenset({8265, 10001, 6379, "dashboard", "client", "gcs", "gcs-server"})
_SECRET_KEY_RE = re.compile(
    r"(password|passwd|passphrase|token|secret|credential|kubeconfig|private_?key|api_?key|access_?key|key|keys)$",
    re.IGNORECASE,
)
# A GCP region (europe-west4), as opposed to a zone (europe-west4-a).
_REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_PUBLIC_KEY_RE = re.compile(r"public_?key$", re.IGNORECASE)

_POD_TEMPLATE_KINDS = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:apps/v1:ReplicaSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:core/v1:ReplicationController",
}
_SERVICE = "kubernetes:core/v1:Service"
_INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
_NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
_RAY_CLUSTER = "kubernetes:ray.io/v1:RayCluster"
_RAY_JOB = "kubernetes:ray.io/v1:RayJob"
_EKS_CLUSTER = "aws:eks/cluster:Cluster"
_EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
_GKE_CLUSTER = "gcp:container/cluster:Cluster"
_GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
_AKS_CLUSTER = "azure-native:containerservice:ManagedCluster"
_AKS_AGENT_POOL = "azure-native:containerservice:AgentPool"
_AKS_DIAGNOSTICS = "azure-native:monitor:DiagnosticSetting"
_HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
_LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
_CAT_NODE = "cats:index:CatNode"
#: Gateway API route kinds: each routes traffic from a Gateway (often public) to Services.
_ROUTE_TYPES = frozenset(
    f"kubernetes:gateway.networking.k8s.io/{version}:{kind}"
    for version in ("v1", "v1beta1", "v1alpha2")
    for kind in ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute", "UDPRoute")
)


# --- reading properties -------------------------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, str) else []


def _get(props: Any, *path: str) -> Any:
    node = props
    for key in path:
        node = _map(node).get(key)
    return node


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _port(value: Any) -> int | str | None:
    """A port as int (mocks send floats) or as a name."""
    number = _number(value)
    if number is not None:
        return int(number)
    return value if isinstance(value, str) else None


def _pod_specs(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every pod spec a workload or Ray resource will create, with a label for messages."""
    if resource_type in _POD_TEMPLATE_KINDS:
        yield "pod template", _map(_get(props, "spec", "template", "spec"))
    elif resource_type == "kubernetes:batch/v1:CronJob":
        yield "job template", _map(_get(props, "spec", "jobTemplate", "spec", "template", "spec"))
    elif resource_type == "kubernetes:core/v1:Pod":
        yield "pod", _map(props.get("spec"))
    elif resource_type in (_RAY_CLUSTER, _RAY_JOB):
        spec = _map(props.get("spec"))
        if resource_type == _RAY_JOB:
            spec = _map(spec.get("rayClusterSpec"))
        yield "Ray head", _map(_get(spec, "headGroupSpec", "template", "spec"))
        for group in _list(spec.get("workerGroupSpecs")):
            yield f"Ray worker group {_map(group).get('groupName')!r}", _map(_get(group, "template", "spec"))


def _ray_cluster_specs(resource_type: str, props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    if resource_type == _RAY_CLUSTER:
        yield _map(props.get("spec"))
    elif resource_type == _RAY_JOB and _get(props, "spec", "rayClusterSpec") is not None:
        yield _map(_get(props, "spec", "rayClusterSpec"))


def _containers(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for where, pod in _pod_specs(resource_type, props):
        for field in ("initContainers", "containers", "ephemeralContainers"):
            for container in _list(pod.get(field)):
                yield f"{where} container {_map(container).get('name')!r}", _map(container)
    for spec in _ray_cluster_specs(resource_type, props):
        options = spec.get("autoscalerOptions")
        if spec.get("enableInTreeAutoscaling") and options is not None:
            # The operator injects this sidecar; an absent image means it reuses the head's (checked above).
            yield "Ray autoscaler sidecar", _map(options)


def _open_to_world(cidr: Any) -> bool:
    try:
        return ipaddress.ip_network(str(cidr), strict=False).prefixlen == 0
    except ValueError:
        return True


def _check_cidrs(field: str, cidrs: Any, report: ReportViolation) -> None:
    values = _list(cidrs)
    if not values:
        report(f"{field} is empty: the API endpoint would accept any address", None)
    for cidr in values:
        if _open_to_world(cidr):
            report(
                f"{field} contains {cidr!r}: the API endpoint must not be open to the whole internet", None
            )


# --- Kubernetes exposure --------------------------------------------------------------------------


def _service_exposure(spec: Mapping[str, Any]) -> str | None:
    service_type = spec.get("type") or "ClusterIP"
    if service_type in ("LoadBalancer", "NodePort"):
        return f"type {service_type}"
    if _list(spec.get("externalIPs")):
        return "externalIPs"
    if service_type == "ExternalName":
        return None
    return None


def _exposed_ports(props: Mapping[str, Any], guarded: frozenset[int | str]) -> list[int | str]:
    """Guarded ports a Service exposes outside the cluster, or [] when it is cluster-internal."""
    spec = _map(props.get("spec"))
    if _service_exposure(spec) is None:
        return []
    hits: list[int | str] = []
    for port in _list(spec.get("ports")):
        entry = _map(port)
        for key in ("port", "targetPort", "name"):
            value = _port(entry.get(key))
            if value in guarded and value not in hits:
                hits.append(value)
    return hits


def _ingress_backends(props: Mapping[str, Any]) -> Iterator[tuple[str, int | str | None]]:
    spec = _map(props.get("spec"))
    backends = [spec.get("defaultBackend")]
    for rule in _list(spec.get("rules")):
        backends.extend(_map(path).get("backend") for path in _list(_get(rule, "http", "paths")))
    for backend in backends:
        service = _map(_map(backend).get("service"))
        if service:
            port = _map(service.get("port"))
            yield str(service.get("name", "")), _port(port.get("number", port.get("name")))


def _route_backends(props: Mapping[str, Any]) -> Iterator[tuple[str, int | str | None]]:
    """Service backends of a Gateway API route (every rule's ``backendRefs``)."""
    for rule in _list(_get(props, "spec", "rules")):
        for ref in _list(_map(rule).get("backendRefs")):
            entry = _map(ref)
            if entry.get("kind", "Service") == "Service":
                yield str(entry.get("name", "")), _port(entry.get("port"))


_EXPOSING_TYPES = frozenset({"LoadBalancer", "NodePort"})


def _helm_exposures(values: Any, path: str = "values") -> Iterator[tuple[str, str]]:
    """Places in Helm values that ask for a LoadBalancer/NodePort service or an ingress."""
    if isinstance(values, Mapping):
        for key, value in values.items():
            here = f"{path}.{key}"
            if key in ("type", "serviceType") and value in _EXPOSING_TYPES:
                yield here, str(value)
            elif key in ("ingress", "enableIngress") and (
                value is True or (isinstance(value, Mapping) and value.get("enabled") is True)
            ):
                yield here, "ingress"
            else:
                yield from _helm_exposures(value, here)
    elif isinstance(values, list):
        for i, value in enumerate(values):
            yield from _helm_exposures(value, f"{path}[{i}]")


def _helm_chart(props: Mapping[str, Any]) -> str:
    return str(props.get("chart", "")).rsplit("/", 1)[-1].lower()


def _validate_kubo_rpc(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == _SERVICE:
        hits = _exposed_ports(args.props, _KUBO_RPC_PORTS)
        if hits:
            how = _service_exposure(_map(args.props.get("spec")))
            report(
                f"Service exposes Kubo RPC port(s) {hits} outside the cluster ({how}); use ClusterIP", None
            )
    elif args.resource_type == _INGRESS:
        for service, port in _ingress_backends(args.props):
            if port in _KUBO_RPC_PORTS or service.endswith("kubo-rpc"):
                report(f"Ingress routes to Kubo RPC ({service}:{port}); the RPC API is an admin API", None)
    elif args.resource_type in _ROUTE_TYPES:
        for service, port in _route_backends(args.props):
            if port in _KUBO_RPC_PORTS or service.endswith("kubo-rpc"):
                report(f"Gateway route to Kubo RPC ({service}:{port}); the RPC API is an admin API", None)
    elif args.resource_type == _HELM_RELEASE and any(w in _helm_chart(args.props) for w in ("kubo", "ipfs")):
        for where, how in _helm_exposures(args.props.get("values")):
            report(f"Helm release of {_helm_chart(args.props)!r} asks for {how} at {where}", None)


kubo_rpc_cluster_only = ResourceValidationPolicy(
    name="kubo-rpc-cluster-only",
    description="Kubo's RPC API (port 5001) is never exposed outside the cluster.",
    validate=_validate_kubo_rpc,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _validate_ray_ports(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == _SERVICE:
        hits = _exposed_ports(args.props, _RAY_PORTS)
        if hits:
            how = _service_exposure(_map(args.props.get("spec")))
            report(f"Service exposes Ray port(s) {hits} outside the cluster ({how}); use ClusterIP", None)
    elif args.resource_type == _INGRESS:
        for service, port in _ingress_backends(args.props):
            if port in _RAY_PORTS or service.endswith("-head-svc"):
                report(
                    f"Ingress routes to the Ray head ({service}:{port}); anyone reaching it can run code",
                    None,
                )
    elif args.resource_type in _ROUTE_TYPES:
        for service, port in _route_backends(args.props):
            if port in _RAY_PORTS or service.endswith("-head-svc"):
                report(
                    f"Gateway route to the Ray head ({service}:{port}); anyone reaching it can run code",
                    None,
                )
    elif (
        args.resource_type == _HELM_RELEASE
        and "ray" in _helm_chart(args.props)
        and _helm_chart(args.props) != "kuberay-operator"
    ):
        for where, how in _helm_exposures(args.props.get("values")):
            report(f"Helm release of {_helm_chart(args.props)!r} asks for {how} at {where}", None)
    for spec in _ray_cluster_specs(args.resource_type, args.props):
        head = _map(spec.get("headGroupSpec"))
        service_type = head.get("serviceType") or "ClusterIP"
        if service_type != "ClusterIP":
            report(
                f"headGroupSpec.serviceType is {service_type!r}; the Ray head service must be ClusterIP", None
            )
        head_service_type = _get(head, "headService", "spec", "type")
        if head_service_type not in (None, "ClusterIP"):
            report(
                f"headGroupSpec.headService.spec.type is {head_service_type!r}; it must be ClusterIP", None
            )
        if head.get("enableIngress"):
            report("headGroupSpec.enableIngress is true: it publishes the Ray dashboard and Jobs API", None)


ray_ports_private = ResourceValidationPolicy(
    name="ray-ports-private",
    description="Ray dashboard/Jobs (8265), client (10001) and GCS (6379) ports stay inside the cluster.",
    validate=_validate_ray_ports,
    enforcement_level=EnforcementLevel.MANDATORY,
)


# --- containers -----------------------------------------------------------------------------------


def _validate_digests(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, container in _containers(args.resource_type, args.props):
        image = container.get("image")
        if image is None and where == "Ray autoscaler sidecar":
            continue
        if not isinstance(image, str) or not _DIGEST_RE.search(image):
            report(f"{where}: image {image!r} is not pinned by @sha256 digest", None)


images_pinned_by_digest = ResourceValidationPolicy(
    name="images-pinned-by-digest",
    description="Every container image is pinned by digest (name@sha256:...), never by tag alone.",
    validate=_validate_digests,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _validate_resources(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, container in _containers(args.resource_type, args.props):
        resources = _map(container.get("resources"))
        missing = [
            f"{kind}.{name}"
            for kind in ("requests", "limits")
            for name in ("cpu", "memory")
            if _map(resources.get(kind)).get(name) in (None, "")
        ]
        if missing:
            report(f"{where}: missing resources {', '.join(missing)}", None)


container_resources = ResourceValidationPolicy(
    name="container-resources",
    description="Every container (Deployments, StatefulSets, Jobs, RayCluster pods) sets CPU and memory "
    "requests and limits.",
    validate=_validate_resources,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _placeholder_hits(resources: Sequence[Any]) -> Iterator[tuple[Any, str]]:
    for resource in resources:
        for where, container in _containers(resource.resource_type, resource.props):
            image = container.get("image")
            if isinstance(image, str) and _DIGEST_RE.search(image):
                digest = image.rsplit(":", 1)[1]
                if digest == digest[:16] * 4:
                    yield resource, f"{where}: {image!r} carries the shipped placeholder digest"


def _is_example(resources: Sequence[Any]) -> bool:
    return any(r.resource_type == _CAT_NODE and r.props.get("example") is True for r in resources)


def _validate_placeholder(args: StackValidationArgs, report: ReportViolation) -> None:
    if _is_example(args.resources):
        return
    for resource, message in _placeholder_hits(args.resources):
        report(f"{message}; the image does not exist, so `pulumi up` would fail pulling it", resource.urn)


placeholder_image_digest = StackValidationPolicy(
    name="placeholder-image-digest",
    description="Images carry a real digest, not the repeating placeholder the program ships with.",
    validate=_validate_placeholder,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _validate_example(args: StackValidationArgs, report: ReportViolation) -> None:
    if _is_example(args.resources):
        for resource, message in _placeholder_hits(args.resources):
            report(f"example stack: {message}; set the real digest before deploying", resource.urn)


example_stack = StackValidationPolicy(
    name="example-stack",
    description="A shipped example stack (cats:example) keeps placeholder digests; it cannot deploy.",
    validate=_validate_example,
    enforcement_level=EnforcementLevel.ADVISORY,
)


def _validate_host_access(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, pod in _pod_specs(args.resource_type, args.props):
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(field) is True:
                report(f"{where}: {field} is true; the pod shares the node's namespaces", None)
    for where, container in _containers(args.resource_type, args.props):
        for port in _list(container.get("ports")):
            if _map(port).get("hostPort") not in (None, 0):
                report(
                    f"{where}: hostPort {_port(_map(port).get('hostPort'))} publishes the port on the node",
                    None,
                )
        context = _map(container.get("securityContext"))
        if context.get("privileged") is True:
            report(f"{where}: privileged container", None)
        if context.get("allowPrivilegeEscalation") is True:
            report(f"{where}: allowPrivilegeEscalation is true", None)


pod_host_access = ResourceValidationPolicy(
    name="pod-host-access",
    description="No pod uses the host's network, PID or IPC namespace, host ports or privileged mode.",
    validate=_validate_host_access,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _validate_ray_auth(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for spec in _ray_cluster_specs(args.resource_type, args.props):
        mode = _get(spec, "authOptions", "mode")
        if mode != "token":
            report(
                f"authOptions.mode is {mode!r}: without token auth anyone reaching a Ray port runs code", None
            )


ray_auth_required = ResourceValidationPolicy(
    name="ray-auth-required",
    description="Every RayCluster has token authentication on (authOptions.mode: token).",
    validate=_validate_ray_auth,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _requests(container: Mapping[str, Any]) -> Capacity:
    resources = _map(container.get("resources"))
    requests = {**_map(resources.get("limits")), **_map(resources.get("requests"))}
    try:
        cpu = parse_cpu(requests["cpu"]) if "cpu" in requests else 0
        memory = parse_memory(requests["memory"]) if "memory" in requests else 0
        gpus = int(float(requests.get("nvidia.com/gpu", 0)))
    except (ValueError, TypeError):
        return Capacity(0, 0)  # container-resources reports malformed or missing figures
    return Capacity(cpu, memory, gpus)


def _pod_requests(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Capacity]]:
    """Each pod's effective request: its containers summed, or its largest init container."""
    for where, pod in _pod_specs(resource_type, props):
        total = Capacity(0, 0)
        for container in _list(pod.get("containers")):
            one = _requests(_map(container))
            total = Capacity(total.cpu_m + one.cpu_m, total.memory + one.memory, total.gpus + one.gpus)
        if where == "Ray head":
            for spec in _ray_cluster_specs(resource_type, props):
                if spec.get("enableInTreeAutoscaling"):
                    # KubeRay adds the autoscaler as a sidecar of the head pod.
                    one = _requests(_map(spec.get("autoscalerOptions")))
                    total = Capacity(total.cpu_m + one.cpu_m, total.memory + one.memory, total.gpus)
        for init in _list(pod.get("initContainers")):
            one = _requests(_map(init))
            total = Capacity(
                max(total.cpu_m, one.cpu_m), max(total.memory, one.memory), max(total.gpus, one.gpus)
            )
        yield where, total


def _pool_types(resources: Sequence[Any]) -> list[tuple[Any, str, str]]:
    """(resource, pool, node type) of every node pool the stack declares."""
    pools: list[tuple[Any, str, str]] = []
    for r in resources:
        if r.resource_type == _EKS_NODE_GROUP:
            pools.extend((r, r.name, str(t)) for t in _list(r.props.get("instanceTypes")))
        elif r.resource_type == _GKE_NODE_POOL:
            pools.append((r, r.name, str(_get(r.props, "nodeConfig", "machineType"))))
        elif r.resource_type == _AKS_AGENT_POOL:
            pools.append((r, r.name, str(r.props.get("vmSize"))))
        elif r.resource_type == _AKS_CLUSTER:
            pools.extend(
                (r, f"{r.name}/{_map(p).get('name')}", str(_map(p).get("vmSize")))
                for p in _list(r.props.get("agentPoolProfiles"))
            )
    return pools


def _validate_fit(args: StackValidationArgs, report: ReportViolation) -> None:
    pools = _pool_types(args.resources)
    capacities: list[tuple[str, Capacity]] = []
    for resource, pool, node_type in pools:
        capacity = allocatable(node_type)
        if capacity is None:
            report(
                f"node pool {pool}: node type {node_type!r} is not in the capacity table "
                "(components/_capacity.py); add its vCPUs, memory and max pods",
                resource.urn,
            )
        else:
            capacities.append((node_type, capacity))
    custom = _map(args.get_config().get("nodeAllocatable"))
    if custom:
        capacities.append(
            ("nodeAllocatable", Capacity(parse_cpu(custom["cpu"]), parse_memory(custom["memory"])))
        )
    if not capacities:
        return  # an existing cluster: nothing known about its nodes unless configured
    for resource in args.resources:
        for where, need in _pod_requests(resource.resource_type, resource.props):
            if not any(capacity.fits(need) for _, capacity in capacities):
                offered = "; ".join(f"{t}: {c.describe()}" for t, c in capacities)
                report(
                    f"{resource.name}: {where} requests {need.describe()}, more than any node can give "
                    f"after system reservations ({offered}); the pod would stay Pending",
                    resource.urn,
                )


pods_fit_node_type = StackValidationPolicy(
    name="pods-fit-node-type",
    description="Every pod's requests fit the allocatable capacity of a node type of the stack's pools.",
    validate=_validate_fit,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(
        properties={
            "nodeAllocatable": {
                "type": "object",
                "description": "Allocatable CPU and memory of the nodes of an existing cluster",
                "properties": {"cpu": {"type": "string"}, "memory": {"type": "string"}},
            }
        }
    ),
)


def _validate_disk_encryption(args: StackValidationArgs, report: ReportViolation) -> None:
    for r in args.resources:
        if r.resource_type == _EKS_NODE_GROUP and not r.props.get("launchTemplate"):
            report(f"{r.name}: no launch template encrypting the node volumes", r.urn)
        elif r.resource_type == _LAUNCH_TEMPLATE:
            for mapping in _list(r.props.get("blockDeviceMappings")):
                if str(_get(mapping, "ebs", "encrypted")).lower() != "true":
                    report(
                        f"{r.name}: block device {_map(mapping).get('deviceName')!r} is not encrypted", r.urn
                    )
        elif r.resource_type == _AKS_AGENT_POOL and r.props.get("enableEncryptionAtHost") is not True:
            report(f"{r.name}: enableEncryptionAtHost is not true (temp disks and caches unencrypted)", r.urn)


node_disk_encryption = StackValidationPolicy(
    name="node-disk-encryption",
    description="Node disks are encrypted at rest (EKS launch templates, AKS encryption at host).",
    validate=_validate_disk_encryption,
    enforcement_level=EnforcementLevel.ADVISORY,
)


# --- managed clusters -----------------------------------------------------------------------------


def _validate_api_endpoint(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == _EKS_CLUSTER:
        vpc = _map(props.get("vpcConfig"))
        if vpc.get("endpointPublicAccess", True) is not False:
            if vpc.get("publicAccessCidrs") is None:
                report("vpcConfig.publicAccessCidrs is unset: EKS then admits 0.0.0.0/0", None)
            else:
                _check_cidrs("vpcConfig.publicAccessCidrs", vpc.get("publicAccessCidrs"), report)
    elif args.resource_type == "eks:index:Cluster":
        if props.get("endpointPublicAccess", True) is not False:
            if props.get("publicAccessCidrs") is None:
                report("publicAccessCidrs is unset: EKS then admits 0.0.0.0/0", None)
            else:
                _check_cidrs("publicAccessCidrs", props.get("publicAccessCidrs"), report)
    elif args.resource_type == _GKE_CLUSTER:
        if _get(props, "privateClusterConfig", "enablePrivateEndpoint") is True:
            return
        networks = props.get("masterAuthorizedNetworksConfig")
        if networks is None:
            report("masterAuthorizedNetworksConfig is unset: the GKE endpoint admits any address", None)
            return
        blocks = [_map(block).get("cidrBlock") for block in _list(_map(networks).get("cidrBlocks"))]
        _check_cidrs("masterAuthorizedNetworksConfig.cidrBlocks", blocks, report)
        if _map(networks).get("gcpPublicCidrsAccessEnabled") is True:
            report(
                "masterAuthorizedNetworksConfig.gcpPublicCidrsAccessEnabled admits all of Google Cloud", None
            )
    elif args.resource_type == _AKS_CLUSTER:
        profile = _map(props.get("apiServerAccessProfile"))
        if profile.get("enablePrivateCluster") is True:
            return
        _check_cidrs("apiServerAccessProfile.authorizedIPRanges", profile.get("authorizedIPRanges"), report)


api_endpoint_restricted = ResourceValidationPolicy(
    name="api-endpoint-restricted",
    description="Managed Kubernetes API endpoints (EKS publicAccessCidrs, GKE master authorized networks, "
    "AKS authorized IP ranges) are not open to 0.0.0.0/0.",
    validate=_validate_api_endpoint,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _cap(args: ResourceValidationArgs, key: str, default: int) -> float:
    value = _number(args.get_config().get(key))
    return value if value is not None else float(default)


def _check_max(what: str, value: Any, cap: float, report: ReportViolation) -> None:
    number = _number(value)
    if number is None:
        report(f"{what} is not set: autoscaling must have an upper bound", None)
    elif number > cap:
        report(f"{what} is {int(number)}, above the cap of {int(cap)}", None)


def _validate_autoscaling(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    nodes = _cap(args, "maxNodes", DEFAULT_MAX_NODES)
    if args.resource_type == _EKS_NODE_GROUP:
        _check_max("scalingConfig.maxSize", _get(props, "scalingConfig", "maxSize"), nodes, report)
    elif args.resource_type == _GKE_NODE_POOL:
        autoscaling = props.get("autoscaling")
        if autoscaling is None:
            _check_max(
                "nodeCount (no autoscaling)",
                props.get("nodeCount", props.get("initialNodeCount")),
                nodes,
                report,
            )
        else:
            scaling = _map(autoscaling)
            if scaling.get("totalMaxNodeCount") is not None:
                _check_max("autoscaling.totalMaxNodeCount", scaling.get("totalMaxNodeCount"), nodes, report)
            else:
                # maxNodeCount is per zone: a regional pool has it in every zone (three by default).
                zones = len(_list(props.get("nodeLocations"))) or (
                    3 if _REGION_RE.match(str(props.get("location", ""))) else 1
                )
                per_zone = _number(scaling.get("maxNodeCount"))
                _check_max(
                    f"autoscaling.maxNodeCount x {zones} zone(s)",
                    None if per_zone is None else per_zone * zones,
                    nodes,
                    report,
                )
    elif args.resource_type == _GKE_CLUSTER:
        if _get(props, "clusterAutoscaling", "enabled") is True and not _list(
            _get(props, "clusterAutoscaling", "resourceLimits")
        ):
            report("clusterAutoscaling (node auto-provisioning) has no resourceLimits", None)
    elif args.resource_type == _AKS_CLUSTER:
        for pool in _list(props.get("agentPoolProfiles")):
            entry = _map(pool)
            if entry.get("enableAutoScaling"):
                _check_max(
                    f"agentPoolProfiles[{entry.get('name')!r}].maxCount", entry.get("maxCount"), nodes, report
                )
    elif args.resource_type == _AKS_AGENT_POOL and props.get("enableAutoScaling"):
        _check_max("maxCount", props.get("maxCount"), nodes, report)
    workers = _cap(args, "maxRayWorkers", DEFAULT_MAX_RAY_WORKERS)
    for spec in _ray_cluster_specs(args.resource_type, props):
        autoscaled = spec.get("enableInTreeAutoscaling") is True
        for group in _list(spec.get("workerGroupSpecs")):
            entry = _map(group)
            what = f"workerGroupSpecs[{entry.get('groupName')!r}]"
            if autoscaled:
                # KubeRay reads an absent maxReplicas as 2^31-1.
                _check_max(f"{what}.maxReplicas", entry.get("maxReplicas"), workers, report)
            else:
                _check_max(
                    f"{what}.replicas", entry.get("replicas", entry.get("minReplicas", 0)), workers, report
                )


bounded_autoscaling = ResourceValidationPolicy(
    name="bounded-autoscaling",
    description="Node pools and Ray worker groups have an upper bound, at most the cap "
    f"(maxNodes {DEFAULT_MAX_NODES}, maxRayWorkers {DEFAULT_MAX_RAY_WORKERS} unless configured).",
    validate=_validate_autoscaling,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(
        properties={
            "maxNodes": {"type": "integer", "default": DEFAULT_MAX_NODES},
            "maxRayWorkers": {"type": "integer", "default": DEFAULT_MAX_RAY_WORKERS},
        }
    ),
)


def _validate_encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == _EKS_CLUSTER:
        configs = (
            _list(props.get("encryptionConfig"))
            if isinstance(props.get("encryptionConfig"), list)
            else [props.get("encryptionConfig")]
        )
        if not any(
            "secrets" in _list(_map(c).get("resources")) and _get(c, "provider", "keyArn") for c in configs
        ):
            report("encryptionConfig does not encrypt 'secrets' with a KMS key", None)
    elif args.resource_type == _GKE_CLUSTER:
        if _get(props, "databaseEncryption", "state") != "ENCRYPTED":
            report(
                "databaseEncryption.state is not ENCRYPTED: etcd secrets use Google's default key only", None
            )
    elif (
        args.resource_type == _AKS_CLUSTER
        and _get(props, "securityProfile", "azureKeyVaultKms", "enabled") is not True
    ):
        report("securityProfile.azureKeyVaultKms is not enabled", None)


secrets_encryption = ResourceValidationPolicy(
    name="secrets-encryption",
    description="Kubernetes secrets are envelope-encrypted with a customer-managed KMS key.",
    validate=_validate_encryption,
    enforcement_level=EnforcementLevel.ADVISORY,
)


def _validate_private_nodes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == _GKE_CLUSTER:
        if _get(props, "privateClusterConfig", "enablePrivateNodes") is not True:
            report("privateClusterConfig.enablePrivateNodes is not true: nodes get public IPs", None)
    elif args.resource_type == _AKS_CLUSTER:
        for pool in _list(props.get("agentPoolProfiles")):
            if _map(pool).get("enableNodePublicIP") is True:
                report(f"agent pool {_map(pool).get('name')!r} gives nodes public IPs", None)
    elif args.resource_type == _AKS_AGENT_POOL and props.get("enableNodePublicIP") is True:
        report("enableNodePublicIP is true: nodes get public IPs", None)


private_nodes = ResourceValidationPolicy(
    name="private-nodes",
    description="Worker nodes have no public IP addresses.",
    validate=_validate_private_nodes,
    enforcement_level=EnforcementLevel.ADVISORY,
)


# --- stack rules ----------------------------------------------------------------------------------


def _pod_labels(resource: Any) -> Mapping[str, Any]:
    return _map(_get(resource.props, "spec", "template", "metadata", "labels"))


def _namespace(resource: Any) -> str | None:
    value = _get(resource.props, "metadata", "namespace")
    return value if isinstance(value, str) else None


def _selects(policy: Any, labels: Mapping[str, Any]) -> bool:
    selector = _map(_get(policy.props, "spec", "podSelector"))
    wanted = _map(selector.get("matchLabels"))
    return all(labels.get(k) == v for k, v in wanted.items()) and not selector.get("matchExpressions")


def _rule_admits_rpc(rule: Mapping[str, Any]) -> bool:
    ports = _list(rule.get("ports"))
    return not ports or any(_port(_map(p).get("port")) in _KUBO_RPC_PORTS for p in ports)


def _peer_is_narrow(peer: Any) -> bool:
    entry = _map(peer)
    if "ipBlock" in entry:
        return False
    pods = _map(entry.get("podSelector"))
    return bool(_map(pods.get("matchLabels")) or _list(pods.get("matchExpressions")))


def _validate_kubo_network_policy(args: StackValidationArgs, report: ReportViolation) -> None:
    policies = [r for r in args.resources if r.resource_type == _NETWORK_POLICY]
    for resource in args.resources:
        if resource.resource_type not in _POD_TEMPLATE_KINDS:
            continue
        containers = _list(_get(resource.props, "spec", "template", "spec", "containers"))
        serves_rpc = any(
            _port(_map(port).get("containerPort")) == 5001
            for container in containers
            for port in _list(_map(container).get("ports"))
        )
        if not serves_rpc:
            continue
        labels = _pod_labels(resource)
        namespace = _namespace(resource)
        fencing = [
            p
            for p in policies
            if _selects(p, labels)
            and (namespace is None or _namespace(p) in (None, namespace))
            and "Ingress" in (_list(_get(p.props, "spec", "policyTypes")) or ["Ingress"])
        ]
        if not fencing:
            report(
                f"{resource.name}: no NetworkPolicy selects the pods serving Kubo RPC (5001)", resource.urn
            )
            continue
        for policy in fencing:
            for rule in _list(_get(policy.props, "spec", "ingress")):
                entry = _map(rule)
                if _rule_admits_rpc(entry) and not (
                    _list(entry.get("from")) and all(_peer_is_narrow(p) for p in _list(entry.get("from")))
                ):
                    report(
                        f"{policy.name}: an ingress rule admits port 5001 from any source; "
                        "name the client pods with a podSelector",
                        policy.urn,
                    )


kubo_rpc_network_policy = StackValidationPolicy(
    name="kubo-rpc-network-policy",
    description="A NetworkPolicy selects Kubo RPC pods and admits 5001 only from labelled pods.",
    validate=_validate_kubo_network_policy,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def plaintext_secret_keys(config_keys: Mapping[str, Any]) -> list[str]:
    """Config keys that look like secrets but are not stored as secrets.

    Args:
        config_keys: Config key (``ns:name``) to whether it is a secret.

    Returns:
        The offending keys, sorted.
    """
    offending = []
    for key, is_secret in config_keys.items():
        name = key.split(":", 1)[-1]
        if _SECRET_KEY_RE.search(name) and not _PUBLIC_KEY_RE.search(name) and is_secret is not True:
            offending.append(key)
    return sorted(offending)


def _validate_secret_config(args: StackValidationArgs, report: ReportViolation) -> None:
    for resource in args.resources:
        keys = resource.props.get("configKeys")
        if isinstance(keys, Mapping):
            for key in plaintext_secret_keys(keys):
                report(
                    f"stack config {key!r} looks like a secret but is plaintext; "
                    f"set it with `pulumi config set --secret {key}`",
                    resource.urn,
                )


no_plaintext_secret_config = StackValidationPolicy(
    name="no-plaintext-secret-config",
    description="Stack config keys that look secret (password, token, secret, key...) are secure: values.",
    validate=_validate_secret_config,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def _validate_logging(args: StackValidationArgs, report: ReportViolation) -> None:
    aks_logs = {
        str(_map(log).get("category"))
        for r in args.resources
        if r.resource_type == _AKS_DIAGNOSTICS
        for log in _list(r.props.get("logs"))
        if _map(log).get("enabled") is not False
    }
    for resource in args.resources:
        props = resource.props
        if resource.resource_type == _EKS_CLUSTER:
            missing = {"api", "audit"} - {str(t) for t in _list(props.get("enabledClusterLogTypes"))}
            if missing:
                report(f"{resource.name}: enabledClusterLogTypes lacks {sorted(missing)}", resource.urn)
        elif resource.resource_type == _GKE_CLUSTER:
            if "APISERVER" not in _list(_get(props, "loggingConfig", "enableComponents")):
                report(f"{resource.name}: loggingConfig.enableComponents lacks APISERVER", resource.urn)
        elif resource.resource_type == _AKS_CLUSTER and not any(c.startswith("kube-audit") for c in aks_logs):
            report(f"{resource.name}: no DiagnosticSetting sends kube-audit logs anywhere", resource.urn)


control_plane_logging = StackValidationPolicy(
    name="control-plane-logging",
    description="The Kubernetes control plane's API and audit logs are collected.",
    validate=_validate_logging,
    enforcement_level=EnforcementLevel.ADVISORY,
)


RESOURCE_POLICIES: list[ResourceValidationPolicy] = [
    kubo_rpc_cluster_only,
    ray_ports_private,
    images_pinned_by_digest,
    container_resources,
    api_endpoint_restricted,
    bounded_autoscaling,
    secrets_encryption,
    private_nodes,
    pod_host_access,
    ray_auth_required,
]
STACK_POLICIES: list[StackValidationPolicy] = [
    kubo_rpc_network_policy,
    no_plaintext_secret_config,
    placeholder_image_digest,
    pods_fit_node_type,
    control_plane_logging,
    node_disk_encryption,
    example_stack,
]
#: Every rule of the pack, in the order reports list them.
POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [*RESOURCE_POLICIES, *STACK_POLICIES]
