"""The Pulumi program of a CAT Node: read the stack's ``cats:*`` config, build one CatNode, export."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pulumi
import yaml

from components import CatNode, CatNodeArgs, PlantArgs

# Optional keys copied as they are: config key -> PlantArgs / CatNodeArgs key.
_PLANT_STRINGS = {
    "region": "region",
    "nodeSize": "node_size",
    "kubernetesVersion": "kubernetes_version",
    "network": "network",
    "clusterName": "cluster_name",
    "adminPrincipalId": "admin_principal_id",
}
_PLANT_INTS = {"nodeCountMin": "node_count_min", "nodeCountMax": "node_count_max"}
_PLANT_BOOLS = {"deletionProtection": "deletion_protection"}
_PLANT_OBJECTS = {"apiAllowedCidrs": "api_allowed_cidrs", "subnetIds": "subnet_ids", "tags": "tags"}
_NODE_STRINGS = {
    "namespace": "namespace",
    "nodeImage": "node_image",
    "nodeStorageSize": "node_storage_size",
    "rayImage": "ray_image",
    "rayVersion": "ray_version",
    "rayHeadCpu": "ray_head_cpu",
    "rayHeadMemory": "ray_head_memory",
    "rayWorkerCpu": "ray_worker_cpu",
    "rayWorkerMemory": "ray_worker_memory",
    "rayWorkerRuntimeClass": "ray_worker_runtime_class",
    "kuboImage": "kubo_image",
    "kuboStorageSize": "kubo_storage_size",
    "kuboSwarmServiceType": "kubo_swarm_service_type",
}
_NODE_INTS = {
    "nodeReplicas": "node_replicas",
    "rayWorkerMin": "ray_worker_min",
    "rayWorkerMax": "ray_worker_max",
    "rayWorkerGpus": "ray_worker_gpus",
}
_NODE_BOOLS = {"example": "example"}


def _declared_keys() -> list[str]:
    """The ``cats:*`` keys Pulumi.yaml declares (its typed ``config:`` section)."""
    project = yaml.safe_load((Path(__file__).parent / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
    name = str(project.get("name", "cats"))
    return [key if ":" in key else f"{name}:{key}" for key in dict(project.get("config") or {})]


def _config_keys() -> dict[str, bool]:
    """Every config key of this stack mapped to whether it is secret (names only, never values)."""
    keys = set(pulumi.runtime.get_config_env()) | set(_declared_keys())
    present = {key for key in keys if pulumi.runtime.get_config(key) is not None}
    return {key: pulumi.runtime.is_config_secret(key) for key in sorted(present)}


def _read(config: pulumi.Config) -> CatNodeArgs:
    plant: dict[str, Any] = {"cloud": config.require("cloud")}
    for key, arg in _PLANT_STRINGS.items():
        if (value := config.get(key)) is not None:
            plant[arg] = value
    for key, arg in _PLANT_INTS.items():
        if (number := config.get_int(key)) is not None:
            plant[arg] = number
    for key, arg in _PLANT_BOOLS.items():
        if (flag := config.get_bool(key)) is not None:
            plant[arg] = flag
    for key, arg in _PLANT_OBJECTS.items():
        if (obj := config.get_object(key)) is not None:
            plant[arg] = obj
    if plant["cloud"] == "existing":
        plant["kubeconfig"] = config.require_secret("kubeconfig")
    node: dict[str, Any] = {
        "plant": cast(PlantArgs, plant),
        "ray_auth_token": config.require_secret("rayAuthToken"),
        "node_api_token": config.require_secret("nodeApiToken"),
        "config_keys": _config_keys(),
    }
    for key, arg in _NODE_STRINGS.items():
        if (value := config.get(key)) is not None:
            node[arg] = value
    for key, arg in _NODE_INTS.items():
        if (number := config.get_int(key)) is not None:
            node[arg] = number
    for key, arg in _NODE_BOOLS.items():
        if (flag := config.get_bool(key)) is not None:
            node[arg] = flag
    return cast(CatNodeArgs, node)


node = CatNode("cats", _read(pulumi.Config("cats")))

pulumi.export("rayJobsAddress", node.ray_jobs_address)
pulumi.export("kuboRpcAddress", node.kubo_rpc_address)
pulumi.export("nodeAddress", node.node_address)
pulumi.export("kubeconfig", node.kubeconfig)
pulumi.export("clusterName", node.cluster_name)
