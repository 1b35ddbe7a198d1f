"""Small builders for Kubernetes object fragments the components repeat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

__all__ = [
    "Fragment",
    "container_resources",
    "hardened_pod",
    "object_meta",
    "restricted_security_context",
]

#: A Kubernetes object fragment in wire (camelCase) form. The SDK's TypedDicts spell keys in
#: snake_case, so camelCase fragments are typed Any here; tests/iac validates every rendered
#: object against the official Kubernetes schemas instead.
Fragment = Any


def container_resources(cpu: str, memory: str, cpu_limit: str | None = None, gpus: int = 0) -> dict[str, Any]:
    """Requests and limits for one container.

    Memory limit equals the request: a container over its request is the first the kubelet evicts,
    and Ray's object store sizes itself from the limit. GPUs are extended resources: Kubernetes
    takes them from the limit and requires request == limit.
    """
    resources: dict[str, Any] = {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit or cpu, "memory": memory},
    }
    if gpus:
        resources["requests"]["nvidia.com/gpu"] = str(gpus)
        resources["limits"]["nvidia.com/gpu"] = str(gpus)
    return resources


def restricted_security_context(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A container security context without privilege escalation or Linux capabilities."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    context.update(extra or {})
    return context


def object_meta(name: str, namespace: pulumi.Input[str], labels: Mapping[str, str]) -> Fragment:
    """Metadata with an explicit name, so in-cluster DNS names are stable across updates."""
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def hardened_pod(
    uid: int,
    gid: int,
    *,
    service_account_token: bool = False,
    runtime_class: str | None = None,
) -> dict[str, Any]:
    """Pod-level settings for pods that run code the node does not control (Ray workers).

    Non-root with a fixed uid, the runtime's default seccomp profile, no service-account token
    mounted (the pod has no business with the Kubernetes API), and optionally a sandboxed
    RuntimeClass (gVisor's ``gvisor`` on GKE Sandbox, ``kata`` ...) so a kernel exploit in user code
    stays inside the sandbox kernel.
    """
    pod: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "fsGroup": gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": service_account_token,
        "enableServiceLinks": False,
    }
    if runtime_class:
        pod["runtimeClassName"] = runtime_class
    return pod
