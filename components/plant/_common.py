"""What every cluster component shares: its arguments, its outputs and the kubeconfig it emits."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from .._validate import check_bounds, check_cidrs, checked

__all__ = ["NODE_COUNT_CAP", "ClusterComponent", "ManagedClusterArgs", "exec_kubeconfig", "validated_common"]

#: Largest node-pool upper bound a stack may ask for; the policy pack enforces the same default cap.
NODE_COUNT_CAP = 50


class ManagedClusterArgs(TypedDict):
    """Inputs shared by the EKS, GKE and AKS cluster components (same names, same meaning)."""

    region: pulumi.Input[str]
    """Cloud region (AWS region, GCP region, Azure location)."""
    api_allowed_cidrs: pulumi.Input[Sequence[str]]
    """Networks allowed to reach the Kubernetes API server; 0.0.0.0/0 is refused."""
    node_count_min: int
    """Lower bound of the worker node pool's autoscaling."""
    node_count_max: int
    """Upper bound of the worker node pool's autoscaling (at most NODE_COUNT_CAP)."""
    node_size: NotRequired[pulumi.Input[str]]
    """Instance type / machine type / VM size of worker nodes; each cloud has a default."""
    kubernetes_version: NotRequired[pulumi.Input[str]]
    """Kubernetes minor version; the cloud's default when absent."""
    subnet_ids: NotRequired[pulumi.Input[Sequence[str]]]
    """Private subnets for the nodes: EKS subnet IDs (required, two zones), GKE subnetwork, AKS subnet ID."""
    network: NotRequired[pulumi.Input[str]]
    """The VPC network (GKE only; ``default`` when absent)."""
    tags: NotRequired[Mapping[str, str]]
    """Tags / labels put on the cloud resources."""
    deletion_protection: NotRequired[bool]
    """Refuse to delete the cluster (GKE; default False so ``redeploy --destroy`` can tear it down)."""
    admin_principal_id: NotRequired[pulumi.Input[str]]
    """Entra object ID granted cluster admin (AKS; default: whoever runs Pulumi)."""


def validated_common(args: ManagedClusterArgs) -> tuple[pulumi.Input[Sequence[str]], int, int]:
    """Validate the inputs every managed cluster needs before any resource is declared.

    Returns:
        The checked API CIDRs and the node-count bounds.
    """
    if not args.get("region"):
        raise ValueError("region: expected a cloud region, found nothing")
    cidrs = checked(args["api_allowed_cidrs"], lambda v: check_cidrs("apiAllowedCidrs", v))
    low, high = check_bounds("nodeCount", args["node_count_min"], args["node_count_max"], NODE_COUNT_CAP)
    return cidrs, low, high


def exec_kubeconfig(
    cluster_name: str, endpoint: str, ca_data: str, command: str, exec_args: Sequence[str]
) -> str:
    """Render a kubeconfig that authenticates with a short-lived token from a CLI plugin.

    Tokens from ``aws eks get-token`` / ``gke-gcloud-auth-plugin`` / ``kubelogin`` expire in minutes,
    so the kubeconfig stored in the stack's state grants nothing on its own.
    """
    server = endpoint if endpoint.startswith("https://") else f"https://{endpoint}"
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster_name, "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [
            {
                "name": cluster_name,
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": command,
                        "args": list(exec_args),
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
    }
    return json.dumps(config, sort_keys=True)


class ClusterComponent(pulumi.ComponentResource):
    """Base of the cluster components: the outputs they all expose.

    Attributes:
        kubeconfig: A kubeconfig for the cluster (secret).
        cluster_name: The cluster's name in its cloud.
        provider: A Kubernetes provider for everything deployed on the cluster.
    """

    kubeconfig: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    provider: k8s.Provider

    def _finish(
        self,
        name: str,
        kubeconfig: pulumi.Input[str],
        cluster_name: pulumi.Input[str],
        on_cluster: Callable[[pulumi.ResourceOptions], None] | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        """Create the Kubernetes provider, then the cluster add-ons, and register the outputs (last).

        Args:
            name: The component's name (children are named after it).
            kubeconfig: A kubeconfig for the cluster.
            cluster_name: The cluster's name.
            on_cluster: Declares the cluster-level objects (StorageClass, autoscaler) with these options.
            depends_on: What the cluster must have before objects are deployed on it (node pools).
        """
        self.kubeconfig = pulumi.Output.secret(kubeconfig)
        self.cluster_name = pulumi.Output.from_input(cluster_name)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            k8s.ProviderArgs(kubeconfig=self.kubeconfig),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        if on_cluster is not None:
            on_cluster(pulumi.ResourceOptions(parent=self, provider=self.provider))
        self.register_outputs({"kubeconfig": self.kubeconfig, "clusterName": self.cluster_name})
