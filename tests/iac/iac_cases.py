"""The CatNode inputs the IaC tests build for each cloud (imported by test modules, after conftest)."""

from __future__ import annotations

from typing import Any

import pulumi
from iac_harness import Built, build

from components import CatNode, CatNodeArgs, PlantArgs

CIDRS = ["203.0.113.0/24"]
PLANTS: dict[str, PlantArgs] = {
    "aws": {
        "cloud": "aws",
        "region": "us-east-1",
        "kubernetes_version": "1.33",
        "api_allowed_cidrs": CIDRS,
        "subnet_ids": ["subnet-a", "subnet-b"],
        "node_count_min": 1,
        "node_count_max": 7,
    },
    "gcp": {
        "cloud": "gcp",
        "region": "europe-west4",
        "kubernetes_version": "1.33",
        "api_allowed_cidrs": CIDRS,
        "node_count_min": 0,
        "node_count_max": 7,
    },
    "azure": {
        "cloud": "azure",
        "region": "westeurope",
        "kubernetes_version": "1.33",
        "api_allowed_cidrs": CIDRS,
        "node_count_min": 1,
        "node_count_max": 7,
    },
    "existing": {
        "cloud": "existing",
        "kubeconfig": pulumi.Output.secret("apiVersion: v1\n"),
        "cluster_name": "onprem",
    },
}
CLUSTER_TYPES = {
    "aws": "cats:index:EksCluster",
    "gcp": "cats:index:GkeCluster",
    "azure": "cats:index:AksCluster",
    "existing": "cats:index:ExistingCluster",
}


def node_args(cloud: str, **extra: Any) -> CatNodeArgs:
    args: dict[str, Any] = {
        "plant": dict(PLANTS[cloud]),
        "ray_auth_token": pulumi.Output.secret("ray-token"),
        "node_api_token": pulumi.Output.secret("node-token"),
        "ray_worker_min": 1,
        "ray_worker_max": 9,
        **extra,
    }
    return args  # type: ignore[return-value]


def build_node(cloud: str, **extra: Any) -> Built:
    def program() -> dict[str, pulumi.Output[Any]]:
        node = CatNode("cats", node_args(cloud, **extra))
        return {
            "ray": node.ray_jobs_address,
            "kubo": node.kubo_rpc_address,
            "cluster": node.cluster_name,
            "kubeconfig": node.kubeconfig,
            "kubeconfig_secret": pulumi.Output.from_input(node.kubeconfig.is_secret()),
        }

    return build(program)
