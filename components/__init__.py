"""Pulumi components of a CAT Node: the Plant (EKS/GKE/AKS/existing), KubeRay, Kubo and the node."""

from __future__ import annotations

from .catnode import DEFAULT_NODE_IMAGE, NODE_LABELS, CatNode, CatNodeArgs
from .kuberay import (
    DEFAULT_RAY_IMAGE,
    KUBERAY_CHART_REPO,
    KUBERAY_CHART_VERSION,
    RAY_WORKER_CAP,
    KubeRay,
    KubeRayArgs,
)
from .kubo import DEFAULT_KUBO_IMAGE, Kubo, KuboArgs
from .plant import (
    NODE_COUNT_CAP,
    AksCluster,
    AksClusterArgs,
    EksCluster,
    EksClusterArgs,
    ExistingCluster,
    ExistingClusterArgs,
    GkeCluster,
    GkeClusterArgs,
    ManagedClusterArgs,
    Plant,
    PlantArgs,
)

__all__ = [
    "DEFAULT_KUBO_IMAGE",
    "DEFAULT_NODE_IMAGE",
    "DEFAULT_RAY_IMAGE",
    "KUBERAY_CHART_REPO",
    "KUBERAY_CHART_VERSION",
    "NODE_COUNT_CAP",
    "NODE_LABELS",
    "RAY_WORKER_CAP",
    "AksCluster",
    "AksClusterArgs",
    "CatNode",
    "CatNodeArgs",
    "EksCluster",
    "EksClusterArgs",
    "ExistingCluster",
    "ExistingClusterArgs",
    "GkeCluster",
    "GkeClusterArgs",
    "KubeRay",
    "KubeRayArgs",
    "Kubo",
    "KuboArgs",
    "ManagedClusterArgs",
    "Plant",
    "PlantArgs",
]
