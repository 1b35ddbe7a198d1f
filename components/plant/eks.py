"""An EKS cluster with private nodes, a restricted API endpoint and KMS-encrypted secrets."""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

# pulumi_aws.ec2 warns at import about one of its own deprecated resources, which this program does
# not use; import it once here so the warning cannot fail a run that treats warnings as errors.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_aws.ec2.encryption_control

from .._capacity import DEFAULT_NODE_SIZE
from .._validate import checked
from ._common import ClusterComponent, ManagedClusterArgs, exec_kubeconfig, validated_common

__all__ = ["CLUSTER_AUTOSCALER_CHART", "EKS_DEFAULT_STORAGE_CLASS", "EksCluster", "EksClusterArgs"]

_CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
_NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
_EBS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
#: Cluster Autoscaler: chart 9.51.0 ships Cluster Autoscaler v1.33.0, matching Kubernetes 1.33.
CLUSTER_AUTOSCALER_CHART = {
    "chart": "cluster-autoscaler",
    "version": "9.51.0",
    "repo": "https://kubernetes.github.io/autoscaler",
}
#: The default StorageClass the stack creates: encrypted gp3 through the EBS CSI driver.
EKS_DEFAULT_STORAGE_CLASS = "gp3-encrypted"
_VPC_CIDR = "10.40.0.0/16"
# Two zones; /19 private subnets leave room for the VPC CNI's one-IP-per-pod, /24 public ones hold
# only the NAT gateway and load balancers.
_PRIVATE_CIDRS = ("10.40.0.0/19", "10.40.32.0/19")
_PUBLIC_CIDRS = ("10.40.192.0/24", "10.40.193.0/24")
_AUTOSCALER_SA = ("kube-system", "cluster-autoscaler")
_EBS_CSI_SA = ("kube-system", "ebs-csi-controller-sa")


class EksClusterArgs(ManagedClusterArgs):
    """Inputs of :class:`EksCluster` (the shared managed-cluster inputs)."""


def _assume_role(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def _irsa_trust(provider_arn: str, issuer_url: str, namespace: str, service_account: str) -> str:
    """Trust policy letting exactly one Kubernetes service account assume a role (IRSA)."""
    issuer = issuer_url.removeprefix("https://")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                            f"{issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )


def _autoscaler_policy(cluster_name: str) -> str:
    """What Cluster Autoscaler needs: read the groups, resize only this cluster's groups."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:DescribeAutoScalingGroups",
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations",
                        "autoscaling:DescribeScalingActivities",
                        "autoscaling:DescribeTags",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions",
                        "ec2:GetInstanceTypesFromInstanceRequirements",
                        "eks:DescribeNodegroup",
                    ],
                    "Resource": "*",
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:SetDesiredCapacity",
                        "autoscaling:TerminateInstanceInAutoScalingGroup",
                    ],
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}
                    },
                },
            ],
        },
        sort_keys=True,
    )


def _nth(index: int, zones: Sequence[str]) -> str:
    if len(zones) <= index:
        raise ValueError(f"region: expected at least two available zones, found {list(zones)}")
    return zones[index]


def _check_subnets(subnets: Sequence[str]) -> list[str]:
    if isinstance(subnets, str) or len(subnets) < 2:
        raise ValueError(
            f"subnetIds: expected at least two private subnet IDs in two zones, found {subnets!r}"
        )
    return list(subnets)


class EksCluster(ClusterComponent):
    """An EKS cluster, one autoscaled managed node group and what a workload needs to run on it.

    Without ``subnet_ids`` the component builds the network: a VPC over two zones with private node
    subnets, public subnets for the load balancers and a NAT gateway (nodes have no public IPs but
    must pull images). With ``subnet_ids`` the nodes go into those private subnets and their routing
    (NAT, endpoints) is the organization's. The API endpoint stays public but only admits
    ``api_allowed_cidrs``: a private-only endpoint would stop this same stack from deploying the
    Kubernetes objects when the deployer is outside the VPC. Secrets are envelope-encrypted with a
    rotating KMS key, every control-plane log type goes to CloudWatch, the cluster's OIDC issuer is an
    IAM identity provider so the EBS CSI driver and Cluster Autoscaler get their own least-privilege
    roles (IRSA), and an encrypted gp3 StorageClass is the default so volume claims bind.

    Everything is declared resource by resource rather than through ``pulumi_eks.Cluster``: that is
    a remote component, opaque under mocks, so the policy pack could not see (nor the tests check)
    the cluster, node group, add-ons and roles it would create.
    """

    def __init__(self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cats:index:EksCluster", name, None, opts)
        cidrs, low, high = validated_common(args)
        tags = dict(args.get("tags", {}))
        # The region is wired into an explicit provider; nothing depends on an ambient aws:region.
        aws_provider = aws.Provider(
            f"{name}-aws", region=args["region"], opts=pulumi.ResourceOptions(parent=self)
        )
        child = pulumi.ResourceOptions(parent=self, provider=aws_provider)
        # A fixed cluster name: subnet discovery tags and the autoscaler's IAM condition need it up front.
        cluster_name = f"{name}-{pulumi.get_stack()}"[:100]
        discovery_tag = {f"kubernetes.io/cluster/{cluster_name}": "shared"}

        subnets = args.get("subnet_ids")
        subnet_ids: pulumi.Input[Sequence[str]]
        if subnets is not None:
            subnet_ids = checked(subnets, _check_subnets)
        else:
            subnet_ids = self._network(name, args["region"], tags, discovery_tag, child)

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
            name=cluster_name,
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
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[cluster_policy])),
        )
        # The VPC CNI enforces NetworkPolicy only when asked to; the Kubo RPC port relies on one. EKS
        # installs vpc-cni itself before the add-on exists, so creating the add-on must take over
        # those fields (OVERWRITE) instead of failing on the conflict.
        aws.eks.Addon(
            f"{name}-vpc-cni",
            cluster_name=cluster.name,
            addon_name="vpc-cni",
            configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=child,
        )
        issuer: pulumi.Output[str] = cluster.identities.apply(
            lambda ids: (ids[0].oidcs[0].issuer or "") if ids and ids[0].oidcs else ""
        )
        oidc = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=issuer, client_id_lists=["sts.amazonaws.com"], tags=tags, opts=child
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
        # Node disks encrypted at rest (the account's default EBS key when none is configured).
        template = aws.ec2.LaunchTemplate(
            f"{name}-nodes",
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {"volume_size": 100, "volume_type": "gp3", "encrypted": "true"},
                }
            ],
            metadata_options={"http_tokens": "required", "http_put_response_hop_limit": 1},
            tags=tags,
            opts=child,
        )
        nodes = aws.eks.NodeGroup(
            f"{name}-nodes",
            cluster_name=cluster.name,
            node_role_arn=node_role.arn,
            subnet_ids=subnet_ids,
            instance_types=[args.get("node_size", DEFAULT_NODE_SIZE["aws"])],
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            scaling_config={"min_size": low, "max_size": high, "desired_size": max(low, 1)},
            update_config={"max_unavailable": 1},
            # Managed node groups tag their Auto Scaling group for Cluster Autoscaler's auto-discovery.
            tags=tags,
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(depends_on=attachments, ignore_changes=["scalingConfig.desiredSize"]),
            ),
        )
        ebs_role = self._irsa_role(f"{name}-ebs-csi", oidc, issuer, _EBS_CSI_SA, tags, child)
        aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi", role=ebs_role.name, policy_arn=_EBS_CSI_POLICY, opts=child
        )
        # The add-on's controller needs nodes to become healthy, so it waits for the node group.
        ebs_csi = aws.eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=cluster.name,
            addon_name="aws-ebs-csi-driver",
            service_account_role_arn=ebs_role.arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[nodes])),
        )
        autoscaler_role = self._irsa_role(f"{name}-autoscaler", oidc, issuer, _AUTOSCALER_SA, tags, child)
        aws.iam.RolePolicy(
            f"{name}-autoscaler", role=autoscaler_role.id, policy=_autoscaler_policy(cluster_name), opts=child
        )
        region = args["region"]

        def on_cluster(k8s_opts: pulumi.ResourceOptions) -> None:
            k8s.storage.v1.StorageClass(
                f"{name}-gp3",
                metadata={
                    "name": EKS_DEFAULT_STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                provisioner="ebs.csi.aws.com",
                parameters={"type": "gp3", "encrypted": "true"},
                volume_binding_mode="WaitForFirstConsumer",
                allow_volume_expansion=True,
                reclaim_policy="Delete",
                opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[ebs_csi])),
            )
            values: dict[str, Any] = {
                "autoDiscovery": {"clusterName": cluster_name},
                "awsRegion": region,
                "rbac": {
                    "serviceAccount": {
                        "name": _AUTOSCALER_SA[1],
                        "annotations": {"eks.amazonaws.com/role-arn": autoscaler_role.arn},
                    }
                },
                "extraArgs": {"balance-similar-node-groups": True, "expander": "least-waste"},
                "resources": {
                    "requests": {"cpu": "100m", "memory": "300Mi"},
                    "limits": {"cpu": "500m", "memory": "300Mi"},
                },
            }
            k8s.helm.v3.Release(
                f"{name}-autoscaler",
                chart=CLUSTER_AUTOSCALER_CHART["chart"],
                version=CLUSTER_AUTOSCALER_CHART["version"],
                repository_opts={"repo": CLUSTER_AUTOSCALER_CHART["repo"]},
                namespace=_AUTOSCALER_SA[0],
                atomic=True,
                values=values,
                opts=k8s_opts,
            )

        kubeconfig = pulumi.Output.all(
            cluster.name, cluster.endpoint, cluster.certificate_authority.data, args["region"]
        ).apply(
            lambda a: exec_kubeconfig(
                a[0], a[1], a[2] or "", "aws", ["eks", "get-token", "--cluster-name", a[0], "--region", a[3]]
            )
        )
        self._finish(name, kubeconfig, cluster.name, on_cluster, depends_on=[nodes])

    def _irsa_role(
        self,
        name: str,
        oidc: aws.iam.OpenIdConnectProvider,
        issuer: pulumi.Output[str],
        service_account: tuple[str, str],
        tags: dict[str, str],
        opts: pulumi.ResourceOptions,
    ) -> aws.iam.Role:
        trust = pulumi.Output.all(oidc.arn, issuer).apply(
            lambda a: _irsa_trust(a[0], a[1], service_account[0], service_account[1])
        )
        return aws.iam.Role(name, assume_role_policy=trust, tags=tags, opts=opts)

    def _network(
        self,
        name: str,
        region: pulumi.Input[str],
        tags: dict[str, str],
        discovery_tag: dict[str, str],
        opts: pulumi.ResourceOptions,
    ) -> pulumi.Output[list[str]]:
        """A VPC over two zones: private node subnets behind a NAT gateway, public subnets for LBs."""
        zones = aws.get_availability_zones_output(
            state="available", opts=pulumi.InvokeOutputOptions(parent=self, provider=opts.provider)
        ).names
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=_VPC_CIDR,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=opts,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=opts)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            tags=tags,
            opts=opts,
        )
        public = []
        for i, cidr in enumerate(_PUBLIC_CIDRS):
            subnet = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zones.apply(functools.partial(_nth, i)),
                map_public_ip_on_launch=False,
                tags={**tags, **discovery_tag, "kubernetes.io/role/elb": "1"},
                opts=opts,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=subnet.id, route_table_id=public_routes.id, opts=opts
            )
            public.append(subnet)
        # One NAT gateway keeps the bill small; one per zone survives a zone outage (docs/iac.md).
        address = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags=tags, opts=opts)
        nat = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=address.id,
            subnet_id=public[0].id,
            tags=tags,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[gateway])),
        )
        private_routes = aws.ec2.RouteTable(
            f"{name}-private",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
            tags=tags,
            opts=opts,
        )
        private = []
        for i, cidr in enumerate(_PRIVATE_CIDRS):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zones.apply(functools.partial(_nth, i)),
                map_public_ip_on_launch=False,
                tags={**tags, **discovery_tag, "kubernetes.io/role/internal-elb": "1"},
                opts=opts,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=private_routes.id, opts=opts
            )
            private.append(subnet)
        return pulumi.Output.all(*(s.id for s in private)).apply(list)
