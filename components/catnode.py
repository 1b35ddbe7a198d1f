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

__all__ = ["DEFAULT_NODE_IMAGE", "NODE_LABELS", "CatNode", "CatNodeArgs"]

#: Placeholder digest with the right shape; organizations set ``cats:nodeImage`` to their build's digest.
DEFAULT_NODE_IMAGE = "ghcr.io/cats-project/cats-node:0.1.0@sha256:" + "89abcdef01234567" * 4
#: Labels of the node service's pods: the only pods admitted to Kubo's RPC API.
NODE_LABELS = {"app.kubernetes.io/name": "cats-node", "app.kubernetes.io/component": "node"}
_NODE_PORT = 8000


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
        super().__init__("cats:index:CatNode", name, {"configKeys": dict(args.get("config_keys", {}))}, opts)
        check_dns_label("name", name)
        namespace_name = check_dns_label("namespace", args.get("namespace", "cats"))
        node_image = check_digest_image("nodeImage", args.get("node_image", DEFAULT_NODE_IMAGE))
        replicas = args.get("node_replicas", 1)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 10:
            raise ValueError(f"nodeReplicas: expected an integer from 1 to 10, found {replicas!r}")
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
        }
        if "ray_image" in args:
            ray_args["ray_image"] = args["ray_image"]
        if "ray_version" in args:
            ray_args["ray_version"] = args["ray_version"]
        ray = KubeRay(f"{name}-ray", ray_args, opts=on_cluster)
        kubo_args: KuboArgs = {"namespace": ns, "rpc_client_labels": NODE_LABELS}
        if "kubo_image" in args:
            kubo_args["image"] = args["kubo_image"]
        if "kubo_storage_size" in args:
            kubo_args["storage_size"] = args["kubo_storage_size"]
        if "kubo_swarm_service_type" in args:
            kubo_args["swarm_service_type"] = args["kubo_swarm_service_type"]
        kubo = Kubo(f"{name}-kubo", kubo_args, opts=on_cluster)
        labels = {**NODE_LABELS, "app.kubernetes.io/part-of": "cats-node"}
        secret_env = [
            ("RAY_AUTH_TOKEN", "auth_token"),
            ("CATS_NODE_TOKEN", "node_api_token"),
        ]
        deployment_spec: Fragment = {
            "replicas": replicas,
            "selector": {"matchLabels": NODE_LABELS},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
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
                                {"name": "CATS_KUBO_RPC", "value": kubo.rpc_address},
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
            }
        )
