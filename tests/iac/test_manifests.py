"""Every Kubernetes object the program declares is a valid manifest; every RayCluster matches the CRD."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from iac_cases import PLANTS, node_args
from iac_harness import SHARED_SCHEMAS, Built, build

from components import CatNode

KUBERNETES_VERSION = "1.33"
# Pulumi-only types (providers, Helm releases) and custom resources are not core Kubernetes objects.
NOT_CORE = ("kubernetes:helm.sh/", "kubernetes:ray.io/", "pulumi:providers:")


def manifest(inputs: dict[str, Any]) -> dict[str, Any]:
    """Turn mock inputs (camelCase already, numbers as floats) into a manifest."""

    def fix(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return fix(inputs)  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=sorted(PLANTS))
def node(request: pytest.FixtureRequest) -> Built:
    return build(lambda: {"ray": CatNode("cats", node_args(request.param)).ray_jobs_address})


@pytest.fixture(scope="module")
def raycluster_schema() -> dict[str, Any]:
    crd_file = SHARED_SCHEMAS / "ray.io_rayclusters.yaml"
    if not crd_file.is_file():
        pytest.skip(f"KubeRay CRD schemas not found at {crd_file} (CI has ../shared beside the checkout)")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(crd_file.read_text(), Loader=loader)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def test_kubernetes_objects_validate(node: Built) -> None:
    objects = [
        r for r in node.resources if r.type.startswith("kubernetes:") and not r.type.startswith(NOT_CORE)
    ]
    assert len(objects) >= 8
    for resource in objects:
        data = manifest(resource.inputs)
        assert data["apiVersion"] and data["kind"], resource.type
        kubernetes_validate.validate(data, KUBERNETES_VERSION, strict=True)


def test_raycluster_validates_against_crd(node: Built, raycluster_schema: dict[str, Any]) -> None:
    clusters = node.of_type("kubernetes:ray.io/v1:RayCluster")
    assert len(clusters) == 1
    for resource in clusters:
        data = manifest(resource.inputs)
        assert (data["apiVersion"], data["kind"]) == ("ray.io/v1", "RayCluster")
        jsonschema.validate(data, raycluster_schema)


def test_crd_schema_catches_a_wrong_field(node: Built, raycluster_schema: dict[str, Any]) -> None:
    bad = copy.deepcopy(manifest(node.one("kubernetes:ray.io/v1:RayCluster").inputs))
    bad["spec"]["authOptions"]["mode"] = "password"
    with pytest.raises(jsonschema.ValidationError, match="'password' is not one of"):
        jsonschema.validate(bad, raycluster_schema)


def test_kubernetes_validate_catches_a_wrong_field() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": "5001"}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="is not of type 'integer'"):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_secret_values_are_not_in_the_namespace_manifest() -> None:
    # The Secret carries its values as secret Outputs; only the Secret object holds them.
    built = build(lambda: {"ray": CatNode("cats", node_args("aws")).ray_jobs_address})
    others = [r for r in built.resources if r.type != "kubernetes:core/v1:Secret"]
    assert "ray-token" not in repr([r.inputs for r in others])
