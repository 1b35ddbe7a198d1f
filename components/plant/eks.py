"""An EKS cluster with private nodes, a restricted API endpoint and KMS-encrypted secrets."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from .._validate import checked
from ._common import ClusterComponent, ManagedClusterArgs, exec_kubeconfig, validated_common

__all__ = ["EksCluster", "EksClusterArgs"]

_CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
_NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)


class EksClusterArgs(ManagedClusterArgs):
    """Inputs of :class:`EksCluster` (the shared managed-cluster inputs)."""


def _assume_role(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def _check_subnets(subnets: Sequence[str]) -> list[str]:
    if isinstance(subnets, str) or len(subnets) < 2:
        raise ValueError(
            f"subnetIds: expected at least two private subnet IDs in two zones, found {subnets!r}"
        )
    return list(subnets)


class EksCluster(ClusterComponent):
    """An EKS cluster and one autoscaled managed node group.

    Nodes run in the private subnets given (no public IPs). The API endpoint stays public but is
    reachable only from ``api_allowed_cidrs``: a private-only endpoint would stop this same stack from
    deploying the Kubernetes objects when the deployer is outside the VPC. Secrets are envelope-encrypted
    with a dedicated, rotating KMS key, and every control-plane log type goes to CloudWatch.
    """

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cats:index:EksCluster", name, None, opts)
        cidrs, low, high = validated_common(args)
        subnets = args.get("subnet_ids")
        if subnets is None:
            raise ValueError("subnetIds: EKS needs at least two private subnet IDs, found none")
        subnet_ids = checked(subnets, _check_subnets)
        tags = dict(args.get("tags", {}))
        child = pulumi.ResourceOptions(parent=self)

        key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"Envelope encryption of Kubernetes secrets in {name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=tags,
            opts=child,
        )
        cluster_role = aws.iam.Role(
            f"{name}-cluster-role",
            assume_role_policy=_assume_role("eks.amazonaws.com"),
            tags=tags,
            opts=child,
        )
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy",
            role=cluster_role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=child,
        )
        cluster = aws.eks.Cluster(
            f"{name}-cluster",
            role_arn=cluster_role.arn,
            version=args.get("kubernetes_version"),
            vpc_config={
                "subnet_ids": subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": True,
                "public_access_cidrs": cidrs,
            },
            encryption_config={"provider": {"key_arn": key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=_CONTROL_PLANE_LOGS,
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True},
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_policy]),
        )
        # The VPC CNI enforces NetworkPolicy only when asked to; the Kubo RPC port relies on one.
        aws.eks.Addon(
            f"{name}-vpc-cni",
            cluster_name=cluster.name,
            addon_name="vpc-cni",
            configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
            opts=child,
        )
        node_role = aws.iam.Role(
            f"{name}-node-role", assume_role_policy=_assume_role("ec2.amazonaws.com"), tags=tags, opts=child
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-policy-{i}", role=node_role.name, policy_arn=arn, opts=child
            )
            for i, arn in enumerate(_NODE_POLICIES)
        ]
        aws.eks.NodeGroup(
            f"{name}-nodes",
            cluster_name=cluster.name,
            node_role_arn=node_role.arn,
            subnet_ids=subnet_ids,
            instance_types=[args.get("node_size", "m6i.xlarge")],
            scaling_config={"min_size": low, "max_size": high, "desired_size": max(low, 1)},
            update_config={"max_unavailable": 1},
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=attachments, ignore_changes=["scalingConfig.desiredSize"]
            ),
        )
        kubeconfig = pulumi.Output.all(
            cluster.name, cluster.endpoint, cluster.certificate_authority.data, args["region"]
        ).apply(
            lambda a: exec_kubeconfig(
                a[0], a[1], a[2] or "", "aws", ["eks", "get-token", "--cluster-name", a[0], "--region", a[3]]
            )
        )
        self._finish(name, kubeconfig, cluster.name)
