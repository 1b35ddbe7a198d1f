"""KubeRay: the operator (Helm) and one autoscaling RayCluster with token auth and private ports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s

from ._k8s import container_resources, restricted_security_context
from ._validate import check_bounds, check_digest_image, check_dns_label

__all__ = [
    "DEFAULT_RAY_IMAGE",
    "KUBERAY_CHART_REPO",
    "KUBERAY_CHART_VERSION",
    "RAY_WORKER_CAP",
    "KubeRay",
    "KubeRayArgs",
]

KUBERAY_CHART_REPO = "https://ray-project.github.io/kuberay-helm/"
KUBERAY_CHART_VERSION = "1.7.0"
#: Placeholder digest with the right shape. Organizations must set ``cats:rayImage`` to the digest
#: they pulled and reviewed (``docker buildx imagetools inspect rayproject/ray:<tag>``).
DEFAULT_RAY_IMAGE = "rayproject/ray:2.52.0-py311@sha256:" + "0123456789abcdef" * 4
#: Largest ``workerMax`` a stack may ask for; the policy pack enforces the same default cap.
RAY_WORKER_CAP = 200


class KubeRayArgs(TypedDict):
    """Inputs of :class:`KubeRay`."""

    namespace: pulumi.Input[str]
    """Namespace of the RayCluster (the CAT Node's namespace)."""
    auth_token_secret: pulumi.Input[str]
    """Name of a Secret in ``namespace`` holding the Ray auth token under the key ``auth_token``."""
    worker_min: int
    """Lower bound of the Ray worker group."""
    worker_max: int
    """Upper bound of the Ray worker group (at most RAY_WORKER_CAP)."""
    ray_image: NotRequired[str]
    """Ray image pinned by digest (``rayproject/ray:<tag>@sha256:<hex>``)."""
    ray_version: NotRequired[str]
    """Ray version inside the image (KubeRay uses it to pick start flags)."""
    operator_namespace: NotRequired[str]
    """Namespace of the KubeRay operator (default ``kuberay-system``)."""
    head_cpu: NotRequired[str]
    """CPU of the head pod (default ``2``)."""
    head_memory: NotRequired[str]
    """Memory of the head pod (default ``8Gi``)."""
    worker_cpu: NotRequired[str]
    """CPU of each worker pod (default ``4``)."""
    worker_memory: NotRequired[str]
    """Memory of each worker pod (default ``16Gi``)."""
    pod_labels: NotRequired[Mapping[str, str]]
    """Extra labels on Ray pods."""


class KubeRay(pulumi.ComponentResource):
    """The KubeRay operator 1.7.0 and a RayCluster named after this component.

    The head Service is ClusterIP: whoever reaches the dashboard/Jobs (8265), client (10001) or GCS
    (6379) port can run code, so they are only reachable inside the cluster, and token auth is on.

    Attributes:
        cluster_name: The RayCluster's name (its head Service is ``<cluster_name>-head-svc``).
        jobs_address: In-cluster URL of the Ray Jobs API.
    """

    cluster_name: pulumi.Output[str]
    jobs_address: pulumi.Output[str]

    def __init__(self, name: str, args: KubeRayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cats:index:KubeRay", name, None, opts)
        check_dns_label("name", name)
        image = check_digest_image("rayImage", args.get("ray_image", DEFAULT_RAY_IMAGE))
        low, high = check_bounds("worker", args["worker_min"], args["worker_max"], RAY_WORKER_CAP)
        operator_ns = check_dns_label("operatorNamespace", args.get("operator_namespace", "kuberay-system"))
        child = pulumi.ResourceOptions(parent=self)

        namespace = k8s.core.v1.Namespace(
            f"{name}-operator-ns",
            metadata={"name": operator_ns, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
            opts=child,
        )
        operator = k8s.helm.v3.Release(
            f"{name}-operator",
            chart="kuberay-operator",
            version=KUBERAY_CHART_VERSION,
            repository_opts={"repo": KUBERAY_CHART_REPO},
            namespace=namespace.metadata.name,
            create_namespace=False,
            atomic=True,
            values={"resources": container_resources("100m", "512Mi", cpu_limit="500m")},
            opts=child,
        )
        labels = {"app.kubernetes.io/part-of": "cats-node", **dict(args.get("pod_labels", {}))}
        head_resources = container_resources(args.get("head_cpu", "2"), args.get("head_memory", "8Gi"))
        worker_resources = container_resources(args.get("worker_cpu", "4"), args.get("worker_memory", "16Gi"))
        spec: dict[str, Any] = {
            "rayVersion": args.get("ray_version", "2.52.0"),
            "enableInTreeAutoscaling": True,
            "autoscalerOptions": {
                "upscalingMode": "Default",
                "idleTimeoutSeconds": 120,
                "image": image,
                "resources": container_resources("500m", "512Mi"),
            },
            "authOptions": {"mode": "token", "secretName": args["auth_token_secret"]},
            "headGroupSpec": {
                "serviceType": "ClusterIP",
                # No tasks on the head: it keeps its memory for the GCS and the Jobs API.
                "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},  # noqa: S104 - ClusterIP only
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "ray-head",
                                "image": image,
                                "ports": [
                                    {"name": "gcs-server", "containerPort": 6379},
                                    {"name": "dashboard", "containerPort": 8265},
                                    {"name": "client", "containerPort": 10001},
                                ],
                                "resources": head_resources,
                                "securityContext": restricted_security_context(),
                            }
                        ]
                    },
                },
            },
            "workerGroupSpecs": [
                {
                    "groupName": "workers",
                    "replicas": low,
                    "minReplicas": low,
                    "maxReplicas": high,
                    "rayStartParams": {},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": "ray-worker",
                                    "image": image,
                                    "resources": worker_resources,
                                    "securityContext": restricted_security_context(),
                                }
                            ]
                        },
                    },
                }
            ],
        }
        k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version="ray.io/v1",
            kind="RayCluster",
            metadata={"name": name, "namespace": args["namespace"], "labels": labels},
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[operator]),
        )
        self.cluster_name = pulumi.Output.from_input(name)
        self.jobs_address = pulumi.Output.concat(
            "http://", name, "-head-svc.", args["namespace"], ".svc:8265"
        )
        self.register_outputs({"clusterName": self.cluster_name, "jobsAddress": self.jobs_address})
