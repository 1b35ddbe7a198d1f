"""KubeRay: the operator (Helm) and one autoscaling RayCluster with token auth and private ports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict, cast

import pulumi
import pulumi_kubernetes as k8s

from ._capacity import parse_cpu, parse_memory
from ._k8s import container_resources, hardened_pod, restricted_security_context
from ._validate import check_bounds, check_digest_image, check_dns_label

__all__ = [
    "DEFAULT_RAY_IMAGE",
    "DEFAULT_RAY_SIZES",
    "KUBERAY_CHART_REPO",
    "KUBERAY_CHART_VERSION",
    "KUBERAY_OPERATOR_IMAGE",
    "RAY_WORKER_CAP",
    "KubeRay",
    "KubeRayArgs",
]

KUBERAY_CHART_REPO = "https://ray-project.github.io/kuberay-helm/"
KUBERAY_CHART_VERSION = "1.7.0"
#: The operator image of that chart version, pinned by digest in the release's values (the chart's
#: own default is the tag only). Digest as pinned by public KubeRay v1.7.0 deployments; check it
#: with ``docker buildx imagetools inspect quay.io/kuberay/operator:v1.7.0`` before a first deploy.
KUBERAY_OPERATOR_IMAGE = (
    "quay.io/kuberay/operator:v1.7.0@sha256:4a779237ef1c5262a63840ccf42d0d67f0b74e911158fbcaee4478fb1560bce6"
)
#: The Plant's Ray image, built from ``images/ray/Dockerfile`` (the pinned Ray base plus
#: ``cats_runtime``, which the job entrypoint needs). Placeholder digest with the right shape:
#: ``make image`` builds and pushes it and writes its digest into ``cats:rayImage`` of the stacks.
DEFAULT_RAY_IMAGE = "ghcr.io/cats-project/cats-ray:0.1.0-ray2.52.0@sha256:" + "0123456789abcdef" * 4
#: Largest ``workerMax`` a stack may ask for; the policy pack enforces the same default cap.
RAY_WORKER_CAP = 200
#: Default pod sizes. They fit every 4-vCPU / 16 GiB default node type after the cloud's reservations
#: and the system DaemonSets (see components/_capacity.py; ``pods-fit-node-type`` checks it).
DEFAULT_RAY_SIZES = {"head_cpu": "1", "head_memory": "4Gi", "worker_cpu": "3", "worker_memory": "10Gi"}
#: uid/gid of the ``ray`` user in the rayproject/ray images.
RAY_UID, RAY_GID = 1000, 100
# KubeRay marks a RayCluster ready once the head and the minimum workers run; the provider waits for it.
_WAIT_FOR_READY = "jsonpath={.status.state}=ready"


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
    """CPU of the head pod (default ``1``)."""
    head_memory: NotRequired[str]
    """Memory of the head pod (default ``4Gi``)."""
    worker_cpu: NotRequired[str]
    """CPU of each worker pod (default ``3``)."""
    worker_memory: NotRequired[str]
    """Memory of each worker pod (default ``10Gi``)."""
    worker_gpus: NotRequired[int]
    """NVIDIA GPUs of each worker pod (default 0)."""
    worker_runtime_class: NotRequired[str]
    """RuntimeClass of the worker pods (``gvisor`` for GKE Sandbox...); the cluster default when absent."""
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
            values={
                "resources": container_resources("100m", "512Mi", cpu_limit="500m"),
                # The chart renders "<repository>:<tag>": a tag with its digest pins the operator.
                "image": {
                    "repository": KUBERAY_OPERATOR_IMAGE.split(":", 1)[0],
                    "tag": KUBERAY_OPERATOR_IMAGE.split(":", 1)[1],
                },
            },
            opts=child,
        )
        labels = {"app.kubernetes.io/part-of": "cats-node", **dict(args.get("pod_labels", {}))}
        given = cast(Mapping[str, Any], args)
        sizes = {key: str(given.get(key, default)) for key, default in DEFAULT_RAY_SIZES.items()}
        for key, value in sizes.items():
            try:
                parse_cpu(value) if key.endswith("cpu") else parse_memory(value)
            except ValueError as exc:
                raise ValueError(f"ray{key.title().replace('_', '')}: {exc}") from None
        gpus = args.get("worker_gpus", 0)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus <= 8:
            raise ValueError(f"rayWorkerGpus: expected an integer from 0 to 8, found {gpus!r}")
        runtime_class = args.get("worker_runtime_class")
        if runtime_class is not None:
            check_dns_label("rayWorkerRuntimeClass", runtime_class)
        head_resources = container_resources(sizes["head_cpu"], sizes["head_memory"])
        worker_resources = container_resources(sizes["worker_cpu"], sizes["worker_memory"], gpus=gpus)
        # Read-only root filesystems: Ray writes its session under /tmp and spills objects to it, and
        # its object store needs a real /dev/shm; both are pod-private emptyDirs.
        scratch = [
            {"name": "tmp", "emptyDir": {"sizeLimit": "10Gi"}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": sizes["worker_memory"]}},
        ]
        mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "shm", "mountPath": "/dev/shm"}]  # noqa: S108
        container_env = [{"name": "HOME", "value": "/tmp"}]  # noqa: S108 - the pod's own emptyDir
        read_only = restricted_security_context({"readOnlyRootFilesystem": True, "runAsNonRoot": True})
        spec: dict[str, Any] = {
            "rayVersion": args.get("ray_version", "2.52.0"),
            "enableInTreeAutoscaling": True,
            "autoscalerOptions": {
                "upscalingMode": "Default",
                "idleTimeoutSeconds": 120,
                "image": image,
                "resources": container_resources("500m", "512Mi"),
                "securityContext": restricted_security_context({"runAsNonRoot": True}),
            },
            "authOptions": {"mode": "token", "secretName": args["auth_token_secret"]},
            "headGroupSpec": {
                "serviceType": "ClusterIP",
                # No tasks on the head: it keeps its memory for the GCS and the Jobs API.
                "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},  # noqa: S104 - ClusterIP only
                "template": {
                    "metadata": {"labels": {**labels, "ray.io/node-type": "head"}},
                    "spec": {
                        # The head keeps its token: the in-tree autoscaler sidecar scales through the API.
                        **hardened_pod(RAY_UID, RAY_GID, service_account_token=True),
                        "volumes": scratch,
                        "containers": [
                            {
                                "name": "ray-head",
                                "image": image,
                                "env": container_env,
                                "ports": [
                                    {"name": "gcs-server", "containerPort": 6379},
                                    {"name": "dashboard", "containerPort": 8265},
                                    {"name": "client", "containerPort": 10001},
                                ],
                                "resources": head_resources,
                                "volumeMounts": mounts,
                                "securityContext": read_only,
                            }
                        ],
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
                        "metadata": {"labels": {**labels, "ray.io/node-type": "worker"}},
                        "spec": {
                            # Workers run submitted code: no API token, non-root, optional sandbox runtime.
                            **hardened_pod(RAY_UID, RAY_GID, runtime_class=runtime_class),
                            "volumes": scratch,
                            "containers": [
                                {
                                    "name": "ray-worker",
                                    "image": image,
                                    "env": container_env,
                                    "resources": worker_resources,
                                    "volumeMounts": mounts,
                                    "securityContext": read_only,
                                }
                            ],
                        },
                    },
                }
            ],
        }
        k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version="ray.io/v1",
            kind="RayCluster",
            metadata={
                "name": name,
                "namespace": args["namespace"],
                "labels": labels,
                # Without it the provider reports success as soon as the object exists, even with the
                # head in ImagePullBackOff; with it `pulumi up` fails when the cluster never gets ready.
                "annotations": {"pulumi.com/waitFor": _WAIT_FOR_READY},
            },
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[operator]),
        )
        self.cluster_name = pulumi.Output.from_input(name)
        self.jobs_address = pulumi.Output.concat(
            "http://", name, "-head-svc.", args["namespace"], ".svc:8265"
        )
        self.register_outputs({"clusterName": self.cluster_name, "jobsAddress": self.jobs_address})
