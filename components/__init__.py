"""Pulumi components of a CAT Node: the Plant (EKS/GKE/AKS/existing), KubeRay, Kubo and the node."""

from __future__ import annotations

from ._capacity import DEFAULT_NODE_SIZE, NODE_TYPES, allocatable
from .catnode import DEFAULT_NODE_IMAGE, NODE_LABELS, RAY_LABELS, CatNode, CatNodeArgs
from .kuberay import (
    DEFAULT_RAY_IMAGE,
    DEFAULT_RAY_SIZES,
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
    "DEFAULT_NODE_SIZE",
    "DEFAULT_RAY_IMAGE",
    "DEFAULT_RAY_SIZES",
    "KUBERAY_CHART_REPO",
    "KUBERAY_CHART_VERSION",
    "NODE_COUNT_CAP",
    "NODE_LABELS",
    "NODE_TYPES",
    "RAY_LABELS",
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
    "allocatable",
]
