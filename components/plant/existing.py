"""A Kubernetes cluster the organization already runs, reached through a kubeconfig."""

from __future__ import annotations

from typing import TypedDict

import pulumi

from .._validate import check_dns_label
from ._common import ClusterComponent

__all__ = ["ExistingCluster", "ExistingClusterArgs"]


class ExistingClusterArgs(TypedDict):
    """Inputs of :class:`ExistingCluster`."""

    kubeconfig: pulumi.Input[str]
    """A kubeconfig for the cluster (pass a secret: ``pulumi config set --secret cats:kubeconfig``)."""
    cluster_name: str
    """A name for the cluster, used in outputs and resource names."""


class ExistingCluster(ClusterComponent):
    """Adopts a cluster by kubeconfig: nothing is created in any cloud.

    The organization owns that cluster's hardening (private nodes, API allow-list, secrets
    encryption); the policy pack still checks everything this stack deploys onto it.
    """

    def __init__(
        self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cats:index:ExistingCluster", name, None, opts)
        if not args.get("kubeconfig"):
            raise ValueError("kubeconfig: expected a kubeconfig for the existing cluster, found nothing")
        cluster_name = check_dns_label("clusterName", args["cluster_name"])
        self._finish(name, args["kubeconfig"], cluster_name)
