"""An AKS cluster with private nodes, authorized API ranges and Key Vault KMS encryption of secrets."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pulumi
import pulumi_azure_native as azure
import yaml

from .._capacity import DEFAULT_NODE_SIZE
from ._common import ClusterComponent, ManagedClusterArgs, validated_common

__all__ = ["AksCluster", "AksClusterArgs", "noninteractive_kubeconfig", "vault_name"]

# Built-in roles (IDs are the same in every tenant).
# Lets the cluster identity wrap and unwrap with the KMS key.
_KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
# With local accounts off and Azure RBAC on, Kubernetes API access is an Azure role assignment.
_AKS_RBAC_CLUSTER_ADMIN = "b1ff04bb-8a4e-4dc4-8eb5-8693396c8b89"
# A cluster identity must manage NICs and load balancers' IPs in a subnet it does not own.
_NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
#: kubelogin login mode written into the kubeconfig: reuses the deployer's ``az login`` session, no prompt.
KUBELOGIN_MODE = "azurecli"
_CONTROL_PLANE_LOGS = [
    "kube-apiserver",
    "kube-audit-admin",
    "kube-controller-manager",
    "kube-scheduler",
    "guard",
]


class AksClusterArgs(ManagedClusterArgs):
    """Inputs of :class:`AksCluster` (the shared managed-cluster inputs)."""


def vault_name(project: str, stack: str, name: str) -> str:
    """A Key Vault name within Azure's limits (3-24 of a-z, 0-9, '-'), unique per project/stack/name.

    Vault names are global and the logical name plus Pulumi's random suffix can exceed 24 characters.
    """
    digest = hashlib.sha256(f"{project}/{stack}/{name}".encode()).hexdigest()
    return f"kv{digest[:20]}"


def noninteractive_kubeconfig(kubeconfig: str, login: str = KUBELOGIN_MODE) -> str:
    """Rewrite AKS's ``exec`` kubeconfig so kubelogin never prompts (as ``kubelogin convert-kubeconfig``).

    AKS hands out ``kubelogin get-token --login devicecode``, which waits for a person at a browser;
    the Kubernetes provider runs unattended, so the login mode becomes ``login`` and interactive mode
    is off.

    Raises:
        ValueError: The kubeconfig has no kubelogin user.
    """
    config: Any = yaml.safe_load(kubeconfig)
    users = config.get("users") if isinstance(config, dict) else None
    converted = 0
    for user in users if isinstance(users, list) else []:
        exec_spec = (user.get("user") or {}).get("exec") if isinstance(user, dict) else None
        if not isinstance(exec_spec, dict) or exec_spec.get("command") != "kubelogin":
            continue
        args = [str(a) for a in exec_spec.get("args") or []]
        if "--login" in args:
            at = args.index("--login")
            del args[at : at + 2]
        exec_spec["args"] = [*args, "--login", login]
        exec_spec["interactiveMode"] = "Never"
        converted += 1
    if not converted:
        raise ValueError(
            "AKS returned a kubeconfig without a kubelogin user; expected format=exec credentials"
        )
    return yaml.safe_dump(config, sort_keys=True)


def _decode_kubeconfig(result: azure.containerservice.ListManagedClusterUserCredentialsResult) -> str:
    if not result.kubeconfigs:
        raise ValueError("AKS returned no kubeconfig for the cluster user")
    return noninteractive_kubeconfig(base64.b64decode(result.kubeconfigs[0].value).decode())


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
        location = args["region"]
        azure_provider = azure.Provider(
            f"{name}-azure", location=location, opts=pulumi.ResourceOptions(parent=self)
        )
        child = pulumi.ResourceOptions(parent=self, provider=azure_provider)
        client = azure.authorization.get_client_config_output(
            opts=pulumi.InvokeOutputOptions(parent=self, provider=azure_provider)
        )

        def role(definition: str) -> pulumi.Output[str]:
            return client.subscription_id.apply(
                lambda s: f"/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{definition}"
            )

        group = azure.resources.ResourceGroup(f"{name}-rg", location=location, tags=tags, opts=child)
        identity = azure.managedidentity.UserAssignedIdentity(
            f"{name}-identity", resource_group_name=group.name, location=location, tags=tags, opts=child
        )
        vault = azure.keyvault.Vault(
            f"{name}-vault",
            vault_name=vault_name(pulumi.get_project(), pulumi.get_stack(), name),
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
            role_definition_id=role(_KEY_VAULT_CRYPTO_USER),
            scope=vault.id,
            opts=child,
        )
        grants: list[pulumi.Resource] = [grant]
        subnets = args.get("subnet_ids")
        subnet_id = (
            pulumi.Output.from_input(subnets).apply(lambda s: s[0] if s else None) if subnets else None
        )
        if subnet_id is not None:
            grants.append(
                azure.authorization.RoleAssignment(
                    f"{name}-subnet-network",
                    principal_id=identity.principal_id,
                    principal_type=azure.authorization.PrincipalType.SERVICE_PRINCIPAL,
                    role_definition_id=role(_NETWORK_CONTRIBUTOR),
                    scope=subnet_id,
                    opts=child,
                )
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
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=grants)),
        )
        # Whoever runs Pulumi (or the configured admin) may use the Kubernetes API: without it the
        # provider's first call is refused, since Azure RBAC decides and local accounts are off.
        admin = azure.authorization.RoleAssignment(
            f"{name}-cluster-admin",
            principal_id=args.get("admin_principal_id", client.object_id),
            role_definition_id=role(_AKS_RBAC_CLUSTER_ADMIN),
            scope=cluster.id,
            opts=child,
        )
        nodes = azure.containerservice.AgentPool(
            f"{name}-nodes",
            resource_group_name=group.name,
            resource_name_=cluster.name,
            agent_pool_name="workers",
            mode=azure.containerservice.AgentPoolMode.USER,
            vm_size=args.get("node_size", DEFAULT_NODE_SIZE["azure"]),
            count=max(low, 1),
            enable_auto_scaling=True,
            min_count=low,
            max_count=high,
            enable_node_public_ip=False,
            os_type=azure.containerservice.OSType.LINUX,
            type=azure.containerservice.AgentPoolType.VIRTUAL_MACHINE_SCALE_SETS,
            vnet_subnet_id=subnet_id,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(ignore_changes=["count"])),
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
            opts=pulumi.InvokeOutputOptions(parent=self, provider=azure_provider),
        )
        self._finish(name, credentials.apply(_decode_kubeconfig), cluster.name, depends_on=[nodes, admin])
