"""Kubo (go-ipfs) as a StatefulSet: public swarm, cluster-only RPC fenced by a NetworkPolicy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from ._k8s import Fragment, container_resources, object_meta
from ._validate import check_digest_image, check_dns_label

__all__ = ["DEFAULT_KUBO_IMAGE", "Kubo", "KuboArgs"]

#: Placeholder digest with the right shape (v0.42+ has ``ipfs diag healthy``). Organizations must set
#: ``cats:kuboImage`` to the digest they pulled and reviewed.
DEFAULT_KUBO_IMAGE = "ipfs/kubo:v0.42.0@sha256:" + "fedcba9876543210" * 4
_SWARM_SERVICE_TYPES = ("LoadBalancer", "NodePort")
_HEALTH = ["ipfs", "--api=/ip4/127.0.0.1/tcp/5001", "diag", "healthy"]


def _service_spec(
    service_type: str, selector: Mapping[str, str], ports: list[tuple[str, int, str]]
) -> Fragment:
    return {
        "type": service_type,
        "selector": dict(selector),
        "ports": [{"name": n, "port": p, "targetPort": n, "protocol": proto} for n, p, proto in ports],
    }


def _headless_spec(selector: Mapping[str, str]) -> Fragment:
    """The StatefulSet's governing Service: DNS identity only, no virtual IP.

    pulumi-kubernetes waits for a Service with a selector until it has endpoints, except when it is
    headless; the endpoints come from the StatefulSet, so a non-headless governing Service awaited
    before the StatefulSet could never become ready. Ready-only addresses are published as usual.
    """
    return {
        "clusterIP": "None",
        "selector": dict(selector),
        "ports": [{"name": "rpc", "port": 5001, "targetPort": "rpc", "protocol": "TCP"}],
    }


class KuboArgs(TypedDict):
    """Inputs of :class:`Kubo`."""

    namespace: pulumi.Input[str]
    """Namespace of the Kubo objects."""
    rpc_client_labels: Mapping[str, str]
    """Pod labels admitted to the RPC API (5001) and the gateway (8080); no other pod reaches them."""
    rpc_extra_clients: NotRequired[Sequence[Mapping[str, str]]]
    """More pod label sets admitted to the RPC API and gateway (the Ray pods, which fetch and add blocks)."""
    swarm_annotations: NotRequired[Mapping[str, str]]
    """Annotations of the swarm Services (the cloud's load-balancer settings)."""
    image: NotRequired[str]
    """Kubo image pinned by digest."""
    storage_size: NotRequired[str]
    """Size of the repo volume (default ``100Gi``)."""
    storage_class: NotRequired[str]
    """StorageClass of the repo volume (the cluster default when absent)."""
    swarm_service_type: NotRequired[str]
    """``LoadBalancer`` (default) or ``NodePort`` for the public swarm port 4001."""
    cpu: NotRequired[str]
    """CPU of the Kubo container (default ``1``)."""
    memory: NotRequired[str]
    """Memory of the Kubo container (default ``4Gi``)."""


class Kubo(pulumi.ComponentResource):
    """One Kubo node with a persistent repo, initialised with the ``server`` profile.

    The swarm port 4001 (TCP and UDP) is public so peers of the CAT Mesh can dial in. The RPC API is
    an admin API and Kubo binds it to 0.0.0.0 inside the pod, so the ClusterIP Service and the
    NetworkPolicy are what keep it private.

    Attributes:
        rpc_address: In-cluster URL of the RPC API.
        gateway_address: In-cluster URL of the HTTP gateway.
    """

    rpc_address: pulumi.Output[str]
    gateway_address: pulumi.Output[str]

    def __init__(self, name: str, args: KuboArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cats:index:Kubo", name, None, opts)
        check_dns_label("name", name)
        image = check_digest_image("kuboImage", args.get("image", DEFAULT_KUBO_IMAGE))
        swarm_type = args.get("swarm_service_type", "LoadBalancer")
        if swarm_type not in _SWARM_SERVICE_TYPES:
            raise ValueError(f"kuboSwarmServiceType: expected LoadBalancer or NodePort, found {swarm_type!r}")
        clients = dict(args["rpc_client_labels"])
        if not clients:
            raise ValueError(
                "rpcClientLabels: expected the labels of the pods allowed to use the RPC API, found none"
            )
        namespace = args["namespace"]
        child = pulumi.ResourceOptions(parent=self)
        selector = {"app.kubernetes.io/name": "kubo", "app.kubernetes.io/instance": name}
        labels = {**selector, "app.kubernetes.io/part-of": "cats-node"}

        volume_claim: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": args.get("storage_size", "100Gi")}},
        }
        if "storage_class" in args:
            volume_claim["storageClassName"] = args["storage_class"]
        probe: dict[str, Any] = {"exec": {"command": _HEALTH}, "periodSeconds": 30, "timeoutSeconds": 10}

        # Governing Service first, by plain name: the StatefulSet must not wait on any Service's Output.
        governing = f"{name}-headless"
        k8s.core.v1.Service(
            f"{name}-headless",
            metadata=object_meta(governing, namespace, labels),
            spec=_headless_spec(selector),
            opts=child,
        )
        k8s.core.v1.Service(
            f"{name}-rpc",
            metadata=object_meta(f"{name}-rpc", namespace, labels),
            spec=_service_spec("ClusterIP", selector, [("rpc", 5001, "TCP")]),
            opts=child,
        )
        k8s.core.v1.Service(
            f"{name}-gateway",
            metadata=object_meta(f"{name}-gateway", namespace, labels),
            spec=_service_spec("ClusterIP", selector, [("gateway", 8080, "TCP")]),
            opts=child,
        )
        # One Service per protocol: a LoadBalancer mixing TCP and UDP is refused by several cloud
        # controllers (the in-tree AWS one among them) and the provider would wait until it times out.
        swarm_annotations = dict(args.get("swarm_annotations", {}))
        for suffix, port_name, protocol in (("swarm", "swarm", "TCP"), ("swarm-udp", "swarm-udp", "UDP")):
            swarm_spec: Fragment = _service_spec(swarm_type, selector, [(port_name, 4001, protocol)])
            # Local keeps the peer's address, which Kubo's connection manager and AutoNAT rely on.
            swarm_spec["externalTrafficPolicy"] = "Local"
            swarm_meta: Fragment = {
                **object_meta(f"{name}-{suffix}", namespace, labels),
                "annotations": swarm_annotations,
            }
            k8s.core.v1.Service(
                f"{name}-{suffix}",
                metadata=swarm_meta,
                spec=swarm_spec,
                opts=child,
            )
        # Selecting the Kubo pods makes ingress deny-by-default; only these rules let traffic in.
        policy_spec: Fragment = {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"port": 4001, "protocol": "TCP"}, {"port": 4001, "protocol": "UDP"}]},
                {
                    "from": [
                        {"podSelector": {"matchLabels": peer}}
                        for peer in [clients, *(dict(p) for p in args.get("rpc_extra_clients", []))]
                    ],
                    "ports": [{"port": 5001, "protocol": "TCP"}, {"port": 8080, "protocol": "TCP"}],
                },
            ],
        }
        k8s.networking.v1.NetworkPolicy(
            f"{name}-rpc-policy",
            metadata=object_meta(f"{name}-rpc", namespace, labels),
            spec=policy_spec,
            opts=child,
        )
        statefulset_spec: Fragment = {
            "serviceName": governing,
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # The image's user ipfs belongs to group 100; the volume must be writable by it.
                    "securityContext": {"fsGroup": 100},
                    "terminationGracePeriodSeconds": 120,
                    "containers": [
                        {
                            "name": "kubo",
                            "image": image,
                            "env": [
                                {"name": "IPFS_PATH", "value": "/data/ipfs"},
                                {"name": "IPFS_PROFILE", "value": "server"},
                            ],
                            "ports": [
                                {"name": "swarm", "containerPort": 4001, "protocol": "TCP"},
                                {"name": "swarm-udp", "containerPort": 4001, "protocol": "UDP"},
                                {"name": "rpc", "containerPort": 5001, "protocol": "TCP"},
                                {"name": "gateway", "containerPort": 8080, "protocol": "TCP"},
                            ],
                            "volumeMounts": [{"name": "data", "mountPath": "/data/ipfs"}],
                            "resources": container_resources(args.get("cpu", "1"), args.get("memory", "4Gi")),
                            "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 30},
                            "readinessProbe": probe,
                            "livenessProbe": {**probe, "failureThreshold": 5},
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": volume_claim}],
        }
        k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=object_meta(name, namespace, labels),
            spec=statefulset_spec,
            opts=child,
        )
        self.rpc_address = pulumi.Output.concat("http://", name, "-rpc.", namespace, ".svc:5001")
        self.gateway_address = pulumi.Output.concat("http://", name, "-gateway.", namespace, ".svc:8080")
        self.register_outputs({"rpcAddress": self.rpc_address, "gatewayAddress": self.gateway_address})
