"""The Plant: the Kubernetes cluster a CAT Node runs on, in whichever cloud the stack names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, NotRequired, TypedDict, get_args

import pulumi
import pulumi_kubernetes as k8s

from ._common import NODE_COUNT_CAP, ClusterComponent, ManagedClusterArgs
from .aks import AksCluster, AksClusterArgs
from .eks import EksCluster, EksClusterArgs
from .existing import ExistingCluster, ExistingClusterArgs
from .gke import GkeCluster, GkeClusterArgs

__all__ = [
    "NODE_COUNT_CAP",
    "AksCluster",
    "AksClusterArgs",
    "Cloud",
    "EksCluster",
    "EksClusterArgs",
    "ExistingCluster",
    "ExistingClusterArgs",
    "GkeCluster",
    "GkeClusterArgs",
    "ManagedClusterArgs",
    "Plant",
    "PlantArgs",
]

Cloud = Literal["aws", "gcp", "azure", "existing"]
_CLOUDS: tuple[str, ...] = get_args(Cloud)


class PlantArgs(TypedDict):
    """Inputs of :class:`Plant`: the cloud, then that cloud's cluster inputs."""

    cloud: str
    """``aws`` (EKS), ``gcp`` (GKE), ``azure`` (AKS) or ``existing`` (a kubeconfig)."""
    region: NotRequired[pulumi.Input[str]]
    """Cloud region; required for managed clusters."""
    api_allowed_cidrs: NotRequired[pulumi.Input[Sequence[str]]]
    """Networks allowed to reach the Kubernetes API; required for managed clusters."""
    node_count_min: NotRequired[int]
    """Lower bound of the worker pool (default 1)."""
    node_count_max: NotRequired[int]
    """Upper bound of the worker pool (default 3)."""
    node_size: NotRequired[pulumi.Input[str]]
    """Worker instance type / machine type / VM size."""
    kubernetes_version: NotRequired[pulumi.Input[str]]
    """Kubernetes version; required for managed clusters (the cloud's default is not pinned)."""
    subnet_ids: NotRequired[pulumi.Input[Sequence[str]]]
    """Private subnets for the nodes (required on EKS)."""
    network: NotRequired[pulumi.Input[str]]
    """GKE VPC network."""
    tags: NotRequired[Mapping[str, str]]
    """Tags / labels for cloud resources."""
    deletion_protection: NotRequired[bool]
    """GKE deletion protection (default False, so the stack can be destroyed)."""
    admin_principal_id: NotRequired[pulumi.Input[str]]
    """AKS: Entra object ID granted cluster admin (default: whoever runs Pulumi)."""
    kubeconfig: NotRequired[pulumi.Input[str]]
    """Kubeconfig of an existing cluster (``cloud: existing`` only)."""
    cluster_name: NotRequired[str]
    """Name of an existing cluster (``cloud: existing`` only)."""


class Plant(pulumi.ComponentResource):
    """Picks the cluster component for the cloud and exposes its outputs unchanged.

    Attributes:
        kubeconfig: Kubeconfig of the cluster (secret).
        cluster_name: The cluster's name.
        provider: Kubernetes provider targeting the cluster.
    """

    kubeconfig: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: PlantArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cats:index:Plant", name, None, opts)
        cloud = args.get("cloud")
        if cloud not in _CLOUDS:
            raise ValueError(f"cloud: expected one of {', '.join(_CLOUDS)}, found {cloud!r}")
        child = pulumi.ResourceOptions(parent=self)
        cluster: ClusterComponent
        if cloud == "existing":
            cluster = ExistingCluster(
                f"{name}-cluster",
                {"kubeconfig": args.get("kubeconfig", ""), "cluster_name": args.get("cluster_name", name)},
                opts=child,
            )
        else:
            if "region" not in args:
                raise ValueError(f"region: expected a region for cloud {cloud!r}, found nothing")
            if "api_allowed_cidrs" not in args:
                raise ValueError(
                    "apiAllowedCidrs: expected the networks allowed to reach the API, found nothing"
                )
            if not args.get("kubernetes_version"):
                # Unset is the cloud's default at deploy time: the same Structure would then deploy
                # a different Kubernetes from one month to the next.
                raise ValueError(
                    f"kubernetesVersion: expected a pinned Kubernetes version for cloud {cloud!r} "
                    "(e.g. 1.33), found nothing"
                )
            managed: ManagedClusterArgs = {
                "region": args["region"],
                "api_allowed_cidrs": args["api_allowed_cidrs"],
                "node_count_min": args.get("node_count_min", 1),
                "node_count_max": args.get("node_count_max", 3),
            }
            for optional in (
                "node_size",
                "kubernetes_version",
                "subnet_ids",
                "network",
                "tags",
                "deletion_protection",
                "admin_principal_id",
            ):
                if optional in args:
                    managed[optional] = args[optional]
            if cloud == "aws":
                cluster = EksCluster(f"{name}-cluster", EksClusterArgs(**managed), opts=child)
            elif cloud == "gcp":
                cluster = GkeCluster(f"{name}-cluster", GkeClusterArgs(**managed), opts=child)
            else:
                cluster = AksCluster(f"{name}-cluster", AksClusterArgs(**managed), opts=child)
        self.kubeconfig = cluster.kubeconfig
        self.cluster_name = cluster.cluster_name
        self.provider = cluster.provider
        self.register_outputs({"kubeconfig": self.kubeconfig, "clusterName": self.cluster_name})
