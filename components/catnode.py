"""A CAT Node: Plant + KubeRay + Kubo + the ``cats node serve`` HTTP service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from ._k8s import Fragment, container_resources, object_meta, restricted_security_context
from ._validate import check_digest_image, check_dns_label
from .kuberay import KubeRay, KubeRayArgs
from .kubo import Kubo, KuboArgs
from .plant import Plant, PlantArgs

__all__ = ["DEFAULT_NODE_IMAGE", "NODE_LABELS", "RAY_LABELS", "CatNode", "CatNodeArgs"]

#: Placeholder digest with the right shape; organizations set ``cats:nodeImage`` to their build's digest.
DEFAULT_NODE_IMAGE = "ghcr.io/cats-project/cats-node:0.1.0@sha256:" + "89abcdef01234567" * 4
#: Labels of the node service's pods: the only pods admitted to Kubo's RPC API.
NODE_LABELS = {"app.kubernetes.io/name": "cats-node", "app.kubernetes.io/component": "node"}
#: Labels of the Ray pods of this node (admitted to Kubo's RPC API, which their tasks use).
RAY_LABELS = {"app.kubernetes.io/name": "cats-ray"}
_NODE_PORT = 8000
_NODE_HOME = "/data/cats"
# CatNodeArgs key -> KubeRayArgs key, copied when set.
_RAY_PASSTHROUGH = {
    "ray_image": "ray_image",
    "ray_version": "ray_version",
    "ray_head_cpu": "head_cpu",
    "ray_head_memory": "head_memory",
    "ray_worker_cpu": "worker_cpu",
    "ray_worker_memory": "worker_memory",
    "ray_worker_gpus": "worker_gpus",
    "ray_worker_runtime_class": "worker_runtime_class",
}
# The swarm LoadBalancers per cloud: on EKS an NLB (the classic ELB carries no UDP), internet-facing,
# targets by instance so externalTrafficPolicy Local keeps the peer's source address.
_SWARM_ANNOTATIONS: dict[str, dict[str, str]] = {
    "aws": {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
    },
}


class CatNodeArgs(TypedDict):
    """Inputs of :class:`CatNode`."""

    plant: PlantArgs
    """Where the cluster comes from (cloud, region, API CIDRs, node pool bounds...)."""
    ray_auth_token: pulumi.Input[str]
    """Ray token-auth secret shared by the RayCluster and the node service (pass a secret)."""
    node_api_token: pulumi.Input[str]
    """Bearer token of the node's HTTP API (pass a secret)."""
    namespace: NotRequired[str]
    """Namespace of the node's workloads (default ``cats``)."""
    node_image: NotRequired[str]
    """Image of the ``cats node serve`` service, pinned by digest."""
    node_replicas: NotRequired[int]
    """Replicas of the node service (default 1)."""
    ray_image: NotRequired[str]
    """Ray image pinned by digest."""
    ray_version: NotRequired[str]
    """Ray version of that image."""
    ray_worker_min: NotRequired[int]
    """Lower bound of Ray workers (default 0)."""
    ray_worker_max: NotRequired[int]
    """Upper bound of Ray workers (default 4)."""
    kubo_image: NotRequired[str]
    """Kubo image pinned by digest."""
    kubo_storage_size: NotRequired[str]
    """Size of Kubo's repo volume."""
    kubo_swarm_service_type: NotRequired[str]
    """``LoadBalancer`` or ``NodePort`` for the public swarm port."""
    ray_head_cpu: NotRequired[str]
    """CPU of the Ray head pod (default ``1``)."""
    ray_head_memory: NotRequired[str]
    """Memory of the Ray head pod (default ``4Gi``)."""
    ray_worker_cpu: NotRequired[str]
    """CPU of each Ray worker pod (default ``3``: fits the 4-vCPU default node types)."""
    ray_worker_memory: NotRequired[str]
    """Memory of each Ray worker pod (default ``10Gi``: fits the 16 GiB default node types)."""
    ray_worker_gpus: NotRequired[int]
    """NVIDIA GPUs of each Ray worker pod (default 0; needs a GPU node type)."""
    ray_worker_runtime_class: NotRequired[str]
    """RuntimeClass of the Ray worker pods, e.g. ``gvisor`` (GKE Sandbox); the cluster default when absent."""
    node_storage_size: NotRequired[str]
    """Size of the node's home volume: blocks, catalog, keys (default ``50Gi``)."""
    example: NotRequired[bool]
    """True for the shipped example stacks: their placeholder image digests are then advisory."""
    config_keys: NotRequired[Mapping[str, bool]]
    """Stack config key names mapped to whether each is secret; values never come here.
    Recorded as an input so the policy pack can refuse plaintext secrets in stack config."""


class CatNode(pulumi.ComponentResource):
    """One organization's CAT Node on Kubernetes.

    Attributes:
        ray_jobs_address: In-cluster URL of the Ray Jobs API.
        kubo_rpc_address: In-cluster URL of Kubo's RPC API.
        node_address: In-cluster URL of the node's HTTP API.
        kubeconfig: Kubeconfig of the cluster (secret).
        cluster_name: Name of the Kubernetes cluster.
    """

    ray_jobs_address: pulumi.Output[str]
    kubo_rpc_address: pulumi.Output[str]
    node_address: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    cluster_name: pulumi.Output[str]

    def __init__(self, name: str, args: CatNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        config_keys = dict(args.get("config_keys", {}))
        example = args.get("example", False) is True
        super().__init__("cats:index:CatNode", name, {"configKeys": config_keys, "example": example}, opts)
        check_dns_label("name", name)
        namespace_name = check_dns_label("namespace", args.get("namespace", "cats"))
        node_image = check_digest_image("nodeImage", args.get("node_image", DEFAULT_NODE_IMAGE))
        replicas = args.get("node_replicas", 1)
        # One home (signing key, catalog, blocks) on one ReadWriteOnce volume: one writer.
        if replicas != 1 or isinstance(replicas, bool):
            raise ValueError(
                f"nodeReplicas: expected 1 (the node's home is one ReadWriteOnce volume), found {replicas!r}"
            )
        for key in ("ray_auth_token", "node_api_token"):
            if not args.get(key):
                raise ValueError(f"{key}: expected a secret value, found nothing")

        plant = Plant(f"{name}-plant", args["plant"], opts=pulumi.ResourceOptions(parent=self))
        # Everything on the cluster goes through the plant's provider, never the ambient kubeconfig.
        on_cluster = pulumi.ResourceOptions(parent=self, providers={"kubernetes": plant.provider})

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": namespace_name, "labels": {"pod-security.kubernetes.io/enforce": "baseline"}},
            opts=on_cluster,
        )
        ns = namespace.metadata.name
        secret = k8s.core.v1.Secret(
            f"{name}-secrets",
            metadata={"name": f"{name}-secrets", "namespace": ns},
            type="Opaque",
            string_data={
                "auth_token": pulumi.Output.secret(args["ray_auth_token"]),
                "node_api_token": pulumi.Output.secret(args["node_api_token"]),
            },
            opts=on_cluster,
        )
        ray_args: KubeRayArgs = {
            "namespace": ns,
            "auth_token_secret": secret.metadata.name,
            "worker_min": args.get("ray_worker_min", 0),
            "worker_max": args.get("ray_worker_max", 4),
            "pod_labels": RAY_LABELS,
        }
        for ours, theirs in _RAY_PASSTHROUGH.items():
            if ours in args:
                ray_args[theirs] = args[ours]  # type: ignore[literal-required]
        ray = KubeRay(f"{name}-ray", ray_args, opts=on_cluster)
        # Ray tasks fetch inputs from and add outputs to Kubo, so Ray pods are RPC clients too.
        kubo_args: KuboArgs = {
            "namespace": ns,
            "rpc_client_labels": NODE_LABELS,
            "rpc_extra_clients": [RAY_LABELS],
            "swarm_annotations": _SWARM_ANNOTATIONS.get(args["plant"].get("cloud", ""), {}),
        }
        if "kubo_image" in args:
            kubo_args["image"] = args["kubo_image"]
        if "kubo_storage_size" in args:
            kubo_args["storage_size"] = args["kubo_storage_size"]
        if "kubo_swarm_service_type" in args:
            kubo_args["swarm_service_type"] = args["kubo_swarm_service_type"]
        kubo = Kubo(f"{name}-kubo", kubo_args, opts=on_cluster)
        labels = {**NODE_LABELS, "app.kubernetes.io/part-of": "cats-node"}
        # The home holds the node's signing key, catalog and blocks: it must survive pod restarts.
        # A claim of a WaitForFirstConsumer class (gp3, premium-rwo, managed-csi) binds only once its
        # pod is scheduled, so awaiting "Bound" before creating the Deployment would never end: the
        # claim is not awaited and the Deployment names it by plain string; the Deployment's own await
        # (pods Ready) covers the volume.
        home_claim = f"{name}-node-home"
        claim_meta: Fragment = {
            **object_meta(home_claim, ns, labels),
            "annotations": {"pulumi.com/skipAwait": "true"},
        }
        claim_spec: Fragment = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": args.get("node_storage_size", "50Gi")}},
        }
        k8s.core.v1.PersistentVolumeClaim(
            f"{name}-node-home",
            metadata=claim_meta,
            spec=claim_spec,
            opts=on_cluster,
        )
        secret_env = [
            ("RAY_AUTH_TOKEN", "auth_token"),
            ("CATS_NODE_TOKEN", "node_api_token"),
        ]
        deployment_spec: Fragment = {
            "replicas": replicas,
            # A ReadWriteOnce home cannot be mounted by the old and the new pod at once.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": NODE_LABELS},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
                    "automountServiceAccountToken": False,
                    "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": home_claim}}],
                    "containers": [
                        {
                            "name": "node",
                            "image": node_image,
                            "command": [
                                "cats",
                                "node",
                                "serve",
                                "--host",
                                "0.0.0.0",  # noqa: S104 - inside the pod; its Service is ClusterIP
                                "--port",
                                str(_NODE_PORT),
                            ],
                            "env": [
                                {"name": "CATS_RAY_ADDRESS", "value": ray.jobs_address},
                                {"name": "CATS_HOME", "value": _NODE_HOME},
                                {"name": "RAY_AUTH_MODE", "value": "token"},
                                *(
                                    {
                                        "name": env,
                                        "valueFrom": {
                                            "secretKeyRef": {"name": secret.metadata.name, "key": key}
                                        },
                                    }
                                    for env, key in secret_env
                                ),
                            ],
                            "ports": [{"name": "http", "containerPort": _NODE_PORT}],
                            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10},
                            "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 30},
                            "resources": container_resources("500m", "1Gi"),
                            "volumeMounts": [{"name": "home", "mountPath": _NODE_HOME}],
                            "securityContext": restricted_security_context(),
                        }
                    ],
                },
            },
        }
        k8s.apps.v1.Deployment(
            f"{name}-node",
            metadata=object_meta(f"{name}-node", ns, labels),
            spec=deployment_spec,
            opts=on_cluster,
        )
        service_spec: Fragment = {
            "type": "ClusterIP",
            "selector": NODE_LABELS,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        }
        service = k8s.core.v1.Service(
            f"{name}-node-svc",
            metadata=object_meta(f"{name}-node", ns, labels),
            spec=service_spec,
            opts=on_cluster,
        )
        self.ray_jobs_address = ray.jobs_address
        self.kubo_rpc_address = kubo.rpc_address
        self.node_address = pulumi.Output.concat("http://", service.metadata.name, ".", ns, ".svc")
        self.kubeconfig = plant.kubeconfig
        self.cluster_name = plant.cluster_name
        self.register_outputs(
            {
                "rayJobsAddress": self.ray_jobs_address,
                "kuboRpcAddress": self.kubo_rpc_address,
                "nodeAddress": self.node_address,
                "kubeconfig": self.kubeconfig,
                "clusterName": self.cluster_name,
                # Outputs replace a component's state in the engine: keep what the stack rules read.
                "configKeys": config_keys,
                "example": example,
            }
        )
