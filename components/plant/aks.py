"""An AKS cluster with private nodes, authorized API ranges and Key Vault KMS encryption of secrets."""

from __future__ import annotations

import base64

import pulumi
import pulumi_azure_native as azure

from ._common import ClusterComponent, ManagedClusterArgs, validated_common

__all__ = ["AksCluster", "AksClusterArgs"]

# Built-in role that lets the cluster identity wrap and unwrap with the KMS key.
_KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
_CONTROL_PLANE_LOGS = [
    "kube-apiserver",
    "kube-audit-admin",
    "kube-controller-manager",
    "kube-scheduler",
    "guard",
]


class AksClusterArgs(ManagedClusterArgs):
    """Inputs of :class:`AksCluster` (the shared managed-cluster inputs)."""


def _decode_kubeconfig(result: azure.containerservice.ListManagedClusterUserCredentialsResult) -> str:
    if not result.kubeconfigs:
        raise ValueError("AKS returned no kubeconfig for the cluster user")
    return base64.b64decode(result.kubeconfigs[0].value).decode()


class AksCluster(ClusterComponent):
    """An AKS cluster: a small inline System pool plus one autoscaled User pool for the workloads.

    Only the System pool is inline: editing inline pools puts every pool in the Scaling state, so the
    workload pool is a separate ``AgentPool``. Local accounts are disabled (Entra ID + Azure RBAC), node
    public IPs are off, the API server admits only the authorized ranges, Azure network policy enforces
    NetworkPolicy, and secrets are encrypted with a Key Vault key through the KMS plugin.
    """

    def __init__(self, name: str, args: AksClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cats:index:AksCluster", name, None, opts)
        cidrs, low, high = validated_common(args)
        tags = dict(args.get("tags", {}))
        child = pulumi.ResourceOptions(parent=self)
        location = args["region"]
        client = azure.authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))

        group = azure.resources.ResourceGroup(f"{name}-rg", location=location, tags=tags, opts=child)
        identity = azure.managedidentity.UserAssignedIdentity(
            f"{name}-identity", resource_group_name=group.name, location=location, tags=tags, opts=child
        )
        vault = azure.keyvault.Vault(
            f"{name}-vault",
            resource_group_name=group.name,
            location=location,
            properties={
                "tenant_id": client.tenant_id,
                "sku": {"family": "A", "name": azure.keyvault.SkuName.STANDARD},
                "enable_rbac_authorization": True,
                "enable_purge_protection": True,
                "enable_soft_delete": True,
                "soft_delete_retention_in_days": 90,
            },
            tags=tags,
            opts=child,
        )
        key = azure.keyvault.Key(
            f"{name}-secrets-key",
            resource_group_name=group.name,
            vault_name=vault.name,
            properties={"kty": azure.keyvault.JsonWebKeyType.RSA, "key_size": 2048},
            opts=child,
        )
        grant = azure.authorization.RoleAssignment(
            f"{name}-secrets-key-grant",
            principal_id=identity.principal_id,
            principal_type=azure.authorization.PrincipalType.SERVICE_PRINCIPAL,
            role_definition_id=client.subscription_id.apply(
                lambda s: (
                    f"/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{_KEY_VAULT_CRYPTO_USER}"
                )
            ),
            scope=vault.id,
            opts=child,
        )
        subnets = args.get("subnet_ids")
        subnet_id = (
            pulumi.Output.from_input(subnets).apply(lambda s: s[0] if s else None) if subnets else None
        )
        cluster = azure.containerservice.ManagedCluster(
            f"{name}-cluster",
            resource_group_name=group.name,
            location=location,
            dns_prefix=name,
            kubernetes_version=args.get("kubernetes_version"),
            identity={
                "type": azure.containerservice.ResourceIdentityType.USER_ASSIGNED,
                "user_assigned_identities": [identity.id],
            },
            agent_pool_profiles=[
                {
                    "name": "system",
                    "mode": azure.containerservice.AgentPoolMode.SYSTEM,
                    "vm_size": "Standard_D2s_v5",
                    "count": 1,
                    "enable_auto_scaling": True,
                    "min_count": 1,
                    "max_count": 3,
                    "enable_node_public_ip": False,
                    "os_type": azure.containerservice.OSType.LINUX,
                    "type": azure.containerservice.AgentPoolType.VIRTUAL_MACHINE_SCALE_SETS,
                    "vnet_subnet_id": subnet_id,
                }
            ],
            api_server_access_profile={"authorized_ip_ranges": cidrs, "enable_private_cluster": False},
            aad_profile={"managed": True, "enable_azure_rbac": True},
            disable_local_accounts=True,
            enable_rbac=True,
            network_profile={"network_plugin": "azure", "network_policy": "azure"},
            security_profile={
                "azure_key_vault_kms": {
                    "enabled": True,
                    "key_id": key.key_uri_with_version,
                    "key_vault_network_access": azure.containerservice.KeyVaultNetworkAccessTypes.PUBLIC,
                }
            },
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grant]),
        )
        azure.containerservice.AgentPool(
            f"{name}-nodes",
            resource_group_name=group.name,
            resource_name_=cluster.name,
            agent_pool_name="workers",
            mode=azure.containerservice.AgentPoolMode.USER,
            vm_size=args.get("node_size", "Standard_D4s_v5"),
            count=max(low, 1),
            enable_auto_scaling=True,
            min_count=low,
            max_count=high,
            enable_node_public_ip=False,
            os_type=azure.containerservice.OSType.LINUX,
            type=azure.containerservice.AgentPoolType.VIRTUAL_MACHINE_SCALE_SETS,
            vnet_subnet_id=subnet_id,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["count"]),
        )
        workspace = azure.operationalinsights.Workspace(
            f"{name}-logs",
            resource_group_name=group.name,
            location=location,
            retention_in_days=90,
            sku={"name": azure.operationalinsights.WorkspaceSkuNameEnum.PER_GB2018},
            tags=tags,
            opts=child,
        )
        azure.monitor.DiagnosticSetting(
            f"{name}-control-plane-logs",
            resource_uri=cluster.id,
            workspace_id=workspace.id,
            logs=[{"category": category, "enabled": True} for category in _CONTROL_PLANE_LOGS],
            opts=child,
        )
        credentials = azure.containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=group.name,
            resource_name=cluster.name,
            format="exec",
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        self._finish(name, credentials.apply(_decode_kubeconfig), cluster.name)
