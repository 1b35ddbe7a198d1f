"""Node types the stacks use and the capacity a pod can really request on each.

Pure data and arithmetic (no Pulumi import), shared by the components (defaults that fit) and the
policy pack (``pods-fit-node-type``). A node's allocatable capacity is its nominal size minus what
the cloud reserves for the kubelet, the container runtime and eviction, computed with each cloud's
documented formula, minus the cluster's own DaemonSets (CNI, kube-proxy, CSI, logging agents), so a
pod that fits here is schedulable on an empty node of that type.

Sources of the formulas: EKS AMI bootstrap (kube-reserved CPU by core, memory ``255Mi + 11Mi x
max-pods``), GKE "node allocatable" (memory 25/20/10/6/2 % brackets), AKS "resource reservations"
(Kubernetes 1.29+: ``20MiB x max-pods + 50MiB`` capped at 25 %), each with a 100Mi hard-eviction
threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

__all__ = [
    "DAEMONSET_OVERHEAD",
    "DEFAULT_NODE_SIZE",
    "NODE_TYPES",
    "Capacity",
    "NodeType",
    "allocatable",
    "parse_cpu",
    "parse_memory",
]

_MI: Final = 1024 * 1024
_GI: Final = 1024 * _MI
_MEMORY_SUFFIX: Final = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 1024,
    "Mi": _MI,
    "Gi": _GI,
    "Ti": 1024 * _GI,
}
_QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$")


def parse_cpu(value: object) -> int:
    """A CPU quantity (``"500m"``, ``"2"``, ``1.5``) in millicores.

    Raises:
        ValueError: The value is not a Kubernetes CPU quantity.
    """
    text = str(value).strip() if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    match = _QUANTITY_RE.match(text)
    if not match or match.group(2) not in ("", "m"):
        raise ValueError(f"expected a CPU quantity such as 500m or 2, found {value!r}")
    number = Decimal(match.group(1))
    return int(number if match.group(2) == "m" else number * 1000)


def parse_memory(value: object) -> int:
    """A memory quantity (``"512Mi"``, ``"4Gi"``, ``"1G"``) in bytes.

    Raises:
        ValueError: The value is not a Kubernetes memory quantity.
    """
    text = str(value).strip() if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    match = _QUANTITY_RE.match(text)
    if not match or match.group(2) not in _MEMORY_SUFFIX:
        raise ValueError(f"expected a memory quantity such as 512Mi or 4Gi, found {value!r}")
    return int(Decimal(match.group(1)) * _MEMORY_SUFFIX[match.group(2)])


@dataclass(frozen=True)
class Capacity:
    """CPU (millicores), memory (bytes) and GPUs."""

    cpu_m: int
    memory: int
    gpus: int = 0

    def fits(self, other: Capacity) -> bool:
        """Whether ``other`` fits in this capacity."""
        return other.cpu_m <= self.cpu_m and other.memory <= self.memory and other.gpus <= self.gpus

    def describe(self) -> str:
        """Human form: ``3.72 CPU, 13.7 GiB``."""
        gpus = f", {self.gpus} GPU" if self.gpus else ""
        return f"{self.cpu_m / 1000:g} CPU, {self.memory / _GI:.1f} GiB{gpus}"


@dataclass(frozen=True)
class NodeType:
    """One instance type / machine type / VM size."""

    cloud: str
    vcpus: int
    memory_gib: float
    max_pods: int
    gpus: int = 0


#: Every node type the shipped stacks and defaults use, plus common neighbours. A stack naming a
#: type not listed fails ``pods-fit-node-type`` until it is added here (with its real figures).
NODE_TYPES: Final[dict[str, NodeType]] = {
    # AWS: max-pods from the VPC CNI's ENI limits (eni-max-pods.txt).
    "m6i.large": NodeType("aws", 2, 8, 29),
    "m6i.xlarge": NodeType("aws", 4, 16, 58),
    "m6i.2xlarge": NodeType("aws", 8, 32, 58),
    "m6i.4xlarge": NodeType("aws", 16, 64, 234),
    "g5.xlarge": NodeType("aws", 4, 16, 58, gpus=1),
    "g5.2xlarge": NodeType("aws", 8, 32, 58, gpus=1),
    # GCP: GKE's default max-pods per node is 110.
    "e2-standard-2": NodeType("gcp", 2, 8, 110),
    "e2-standard-4": NodeType("gcp", 4, 16, 110),
    "e2-standard-8": NodeType("gcp", 8, 32, 110),
    "n2-standard-8": NodeType("gcp", 8, 32, 110),
    "g2-standard-8": NodeType("gcp", 8, 32, 110, gpus=1),
    # Azure: Azure CNI's default max-pods is 30.
    "Standard_D2s_v5": NodeType("azure", 2, 8, 30),
    "Standard_D4s_v5": NodeType("azure", 4, 16, 30),
    "Standard_D8s_v5": NodeType("azure", 8, 32, 30),
    "Standard_NC8as_T4_v3": NodeType("azure", 8, 56, 30, gpus=1),
}
#: The worker pool's node type when a stack sets no ``cats:nodeSize``.
DEFAULT_NODE_SIZE: Final = {"aws": "m6i.xlarge", "gcp": "e2-standard-4", "azure": "Standard_D4s_v5"}
#: What the cluster's own DaemonSets request on every node (CNI, kube-proxy, CSI node driver, log and
#: metrics agents); measured figures vary by version, this is a deliberately generous bound.
DAEMONSET_OVERHEAD: Final = Capacity(cpu_m=300, memory=768 * _MI)
# The memory a VM reports is below its nominal size (firmware, kernel); 4 % covers all three clouds.
_KERNEL_SHARE: Final = Decimal("0.04")
_EVICTION: Final = 100 * _MI


def _cpu_reserved_m(vcpus: int, cloud: str) -> int:
    if cloud == "azure":
        table = {1: 60, 2: 100, 4: 140, 8: 180, 16: 260, 32: 420, 64: 740}
        return table.get(vcpus, 740)
    # EKS and GKE: 6 % of the first core, 1 % of the second, 0.5 % of the next two, 0.25 % above.
    shares = [Decimal("0.06"), Decimal("0.01"), Decimal("0.005"), Decimal("0.005")]
    millis = sum(
        (Decimal(1000) * (shares[c] if c < 4 else Decimal("0.0025")) for c in range(vcpus)), Decimal(0)
    )
    return int(millis)


def _memory_reserved(node: NodeType) -> int:
    total = int(Decimal(str(node.memory_gib)) * _GI)
    if node.cloud == "aws":
        return 255 * _MI + 11 * _MI * node.max_pods + _EVICTION
    if node.cloud == "azure":
        return min(20 * _MI * node.max_pods + 50 * _MI, total // 4) + _EVICTION
    reserved = Decimal(0)
    left = Decimal(total)
    for size_gib, share in ((4, "0.25"), (4, "0.20"), (8, "0.10"), (112, "0.06"), (10**6, "0.02")):
        part = min(left, Decimal(size_gib * _GI))
        reserved += part * Decimal(share)
        left -= part
        if left <= 0:
            break
    return int(reserved) + _EVICTION


def allocatable(node_type: str) -> Capacity | None:
    """What one pod may request on an otherwise empty node of ``node_type``; None when unknown."""
    node = NODE_TYPES.get(node_type)
    if node is None:
        return None
    nominal = int(Decimal(str(node.memory_gib)) * _GI * (1 - _KERNEL_SHARE))
    return Capacity(
        cpu_m=node.vcpus * 1000 - _cpu_reserved_m(node.vcpus, node.cloud) - DAEMONSET_OVERHEAD.cpu_m,
        memory=nominal - _memory_reserved(node) - DAEMONSET_OVERHEAD.memory,
        gpus=node.gpus,
    )
