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
secrets-encryption               advisory    cluster secrets not envelope-encrypted with a KMS key
control-plane-logging            advisory    no audit trail of the Kubernetes API
private-nodes                    advisory    worker nodes with public IPs
placeholder-image-digest         advisory    the shipped placeholder digests left in place
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


def _validate_placeholder(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, container in _containers(args.resource_type, args.props):
        image = container.get("image")
        if isinstance(image, str) and _DIGEST_RE.search(image):
            digest = image.rsplit(":", 1)[1]
            if digest == digest[:16] * 4:
                report(f"{where}: {image!r} carries the shipped placeholder digest; set the real one", None)


placeholder_image_digest = ResourceValidationPolicy(
    name="placeholder-image-digest",
    description="Images carry a real digest, not the repeating placeholder the program ships with.",
    validate=_validate_placeholder,
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
            _check_max(
                "autoscaling.maxNodeCount",
                scaling.get("maxNodeCount", scaling.get("totalMaxNodeCount")),
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
    placeholder_image_digest,
]
STACK_POLICIES: list[StackValidationPolicy] = [
    kubo_rpc_network_policy,
    no_plaintext_secret_config,
    control_plane_logging,
]
#: Every rule of the pack, in the order reports list them.
POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [*RESOURCE_POLICIES, *STACK_POLICIES]
