"""A GKE cluster with private nodes, authorized API networks and KMS database encryption."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

# pulumi_gcp.compute warns at import about one of its own deprecated resources, which this program
# does not use; import it once here so the warning cannot fail a run that treats warnings as errors.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    _ = gcp.compute.Router  # the package is lazy: touching a member imports the whole module

from .._capacity import DEFAULT_NODE_SIZE
from ._common import ClusterComponent, ManagedClusterArgs, exec_kubeconfig, validated_common

__all__ = ["NODE_SCOPES", "NODE_SERVICE_ACCOUNT_ROLES", "GkeCluster", "GkeClusterArgs"]

#: The least a node needs: write logs and metrics, read images from Artifact Registry.
NODE_SERVICE_ACCOUNT_ROLES = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
)
#: Access scopes of the nodes (GKE's default set, without cloud-platform): with a dedicated service
#: account, IAM is the real limit; narrow scopes also bound what a stolen node token could ask for.
NODE_SCOPES = [
    "https://www.googleapis.com/auth/devstorage.read_only",
    "https://www.googleapis.com/auth/logging.write",
    "https://www.googleapis.com/auth/monitoring",
    "https://www.googleapis.com/auth/service.management.readonly",
    "https://www.googleapis.com/auth/servicecontrol",
    "https://www.googleapis.com/auth/trace.append",
]

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
        deletion_protection = args.get("deletion_protection", False)
        if not isinstance(deletion_protection, bool):
            raise ValueError(f"deletionProtection: expected true or false, found {deletion_protection!r}")
        gcp_provider = gcp.Provider(
            f"{name}-gcp", region=args["region"], opts=pulumi.ResourceOptions(parent=self)
        )
        child = pulumi.ResourceOptions(parent=self, provider=gcp_provider)
        invoke = pulumi.InvokeOutputOptions(parent=self, provider=gcp_provider)
        network = args.get("network", "default")
        subnets = args.get("subnet_ids")
        subnetwork = (
            pulumi.Output.from_input(subnets).apply(lambda s: s[0] if s else None) if subnets else None
        )

        # Private nodes have no public IPs: Cloud NAT is their only way to Docker Hub, quay.io, ghcr.io.
        router = gcp.compute.Router(f"{name}-router", network=network, region=args["region"], opts=child)
        gcp.compute.RouterNat(
            f"{name}-nat",
            router=router.name,
            region=args["region"],
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config={"enable": True, "filter": "ERRORS_ONLY"},
            opts=child,
        )
        key_ring = gcp.kms.KeyRing(f"{name}-keyring", location=args["region"], opts=child)
        key = gcp.kms.CryptoKey(
            f"{name}-secrets-key",
            key_ring=key_ring.id,
            rotation_period="7776000s",
            purpose="ENCRYPT_DECRYPT",
            opts=child,
        )
        project = gcp.organizations.get_project_output(opts=invoke)
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
        # A dedicated node identity instead of the project's default Compute account (Editor).
        node_account = gcp.serviceaccount.Account(
            f"{name}-nodes",
            account_id=f"{name}-nodes"[:30],
            display_name=f"GKE nodes of {name}",
            opts=child,
        )
        for role in NODE_SERVICE_ACCOUNT_ROLES:
            gcp.projects.IAMMember(
                f"{name}-nodes-{role.split('/')[-1].replace('.', '-').lower()}",
                project=project.project_id,
                role=role,
                member=node_account.email.apply(lambda e: f"serviceAccount:{e}"),
                opts=child,
            )
        cluster = gcp.container.Cluster(
            f"{name}-cluster",
            location=args["region"],
            network=network,
            subnetwork=subnetwork,
            min_master_version=args.get("kubernetes_version"),
            # No release channel: a channel upgrades the control plane and the nodes on Google's
            # schedule and forbids turning node auto-upgrade off, so the version would drift from
            # the one the stack (and the Structure) pins. Google still upgrades a version that
            # reaches end of support.
            release_channel={"channel": "UNSPECIFIED"},
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
            deletion_protection=deletion_protection,
            # The temporary default pool also runs as the dedicated account.
            node_config={"service_account": node_account.email, "oauth_scopes": NODE_SCOPES},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[grant])),
        )
        nodes = gcp.container.NodePool(
            f"{name}-nodes",
            cluster=cluster.id,
            location=args["region"],
            # Totals across the region's zones: per-zone counts would multiply the bounds by the zones.
            initial_node_count=1,
            autoscaling={
                "total_min_node_count": low,
                "total_max_node_count": high,
                "location_policy": "BALANCED",
            },
            # The nodes run the pinned version and stay there (auto-upgrade would move them).
            version=args.get("kubernetes_version"),
            management={"auto_repair": True, "auto_upgrade": False},
            node_config={
                "machine_type": args.get("node_size", DEFAULT_NODE_SIZE["gcp"]),
                "service_account": node_account.email,
                "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
                "workload_metadata_config": {"mode": "GKE_METADATA"},
                "oauth_scopes": NODE_SCOPES,
                "resource_labels": labels,
            },
            # Ignore what the autoscaler changes (the initial count is per zone and only used once).
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(ignore_changes=["initialNodeCount"])
            ),
        )
        kubeconfig = pulumi.Output.all(
            cluster.name, cluster.endpoint, cluster.master_auth.cluster_ca_certificate
        ).apply(lambda a: exec_kubeconfig(a[0], a[1], a[2] or "", "gke-gcloud-auth-plugin", []))
        self._finish(name, kubeconfig, cluster.name, depends_on=[nodes])
