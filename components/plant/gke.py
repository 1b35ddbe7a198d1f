"""A GKE cluster with private nodes, authorized API networks and KMS database encryption."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

from ._common import ClusterComponent, ManagedClusterArgs, exec_kubeconfig, validated_common

__all__ = ["GkeCluster", "GkeClusterArgs"]

# GKE picks the Pod and Service ranges itself; VPC-native networking is what private nodes need.
_EMPTY: gcp.container.ClusterIpAllocationPolicyArgsDict = {}
_LOG_COMPONENTS = ["SYSTEM_COMPONENTS", "APISERVER", "CONTROLLER_MANAGER", "SCHEDULER", "WORKLOADS"]


class GkeClusterArgs(ManagedClusterArgs):
    """Inputs of :class:`GkeCluster` (the shared managed-cluster inputs)."""


def _networks(
    cidrs: Sequence[str],
) -> list[gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgsDict]:
    return [{"cidr_block": cidr, "display_name": f"allowed-{i}"} for i, cidr in enumerate(cidrs)]


class GkeCluster(ClusterComponent):
    """A regional GKE cluster whose default node pool is replaced by one autoscaled pool.

    GKE cannot change the default pool in place, so it is removed at creation and a separate
    ``NodePool`` carries the bounds. Nodes have no public IPs; the public endpoint only admits the
    authorized networks; Dataplane V2 enforces NetworkPolicy; etcd secrets are encrypted with a
    rotating Cloud KMS key that only the GKE service agent may use.
    """

    def __init__(self, name: str, args: GkeClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cats:index:GkeCluster", name, None, opts)
        cidrs, low, high = validated_common(args)
        labels = dict(args.get("tags", {}))
        child = pulumi.ResourceOptions(parent=self)
        subnets = args.get("subnet_ids")
        subnetwork = (
            pulumi.Output.from_input(subnets).apply(lambda s: s[0] if s else None) if subnets else None
        )

        key_ring = gcp.kms.KeyRing(f"{name}-keyring", location=args["region"], opts=child)
        key = gcp.kms.CryptoKey(
            f"{name}-secrets-key",
            key_ring=key_ring.id,
            rotation_period="7776000s",
            purpose="ENCRYPT_DECRYPT",
            opts=child,
        )
        project = gcp.organizations.get_project_output(opts=pulumi.InvokeOutputOptions(parent=self))
        grant = gcp.kms.CryptoKeyIAMMember(
            f"{name}-secrets-key-gke",
            crypto_key_id=key.id,
            role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
            member=project.number.apply(
                lambda n: f"serviceAccount:service-{n}@container-engine-robot.iam.gserviceaccount.com"
            ),
            opts=child,
        )
        authorized: gcp.container.ClusterMasterAuthorizedNetworksConfigArgsDict = {
            "cidr_blocks": pulumi.Output.from_input(cidrs).apply(_networks)
        }
        private: gcp.container.ClusterPrivateClusterConfigArgsDict = {
            "enable_private_nodes": True,
            # A private-only endpoint would cut off this stack's own Kubernetes deployments.
            "enable_private_endpoint": False,
            "master_ipv4_cidr_block": "172.16.0.0/28",
        }
        encryption: gcp.container.ClusterDatabaseEncryptionArgsDict = {
            "state": "ENCRYPTED",
            "key_name": key.id,
        }
        logging: gcp.container.ClusterLoggingConfigArgsDict = {"enable_components": _LOG_COMPONENTS}
        identity: gcp.container.ClusterWorkloadIdentityConfigArgsDict = {
            "workload_pool": project.project_id.apply(lambda p: f"{p}.svc.id.goog")
        }
        cluster = gcp.container.Cluster(
            f"{name}-cluster",
            location=args["region"],
            network=args.get("network", "default"),
            subnetwork=subnetwork,
            min_master_version=args.get("kubernetes_version"),
            remove_default_node_pool=True,
            initial_node_count=1,
            networking_mode="VPC_NATIVE",
            ip_allocation_policy=_EMPTY,
            datapath_provider="ADVANCED_DATAPATH",
            private_cluster_config=private,
            master_authorized_networks_config=authorized,
            database_encryption=encryption,
            logging_config=logging,
            workload_identity_config=identity,
            resource_labels=labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grant]),
        )
        gcp.container.NodePool(
            f"{name}-nodes",
            cluster=cluster.id,
            location=args["region"],
            initial_node_count=max(low, 1),
            autoscaling={"min_node_count": low, "max_node_count": high},
            management={"auto_repair": True, "auto_upgrade": True},
            node_config={
                "machine_type": args.get("node_size", "e2-standard-4"),
                "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
                "workload_metadata_config": {"mode": "GKE_METADATA"},
                "oauth_scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                "resource_labels": labels,
            },
            opts=child,
        )
        kubeconfig = pulumi.Output.all(
            cluster.name, cluster.endpoint, cluster.master_auth.cluster_ca_certificate
        ).apply(lambda a: exec_kubeconfig(a[0], a[1], a[2] or "", "gke-gcloud-auth-plugin", []))
        self._finish(name, kubeconfig, cluster.name)
