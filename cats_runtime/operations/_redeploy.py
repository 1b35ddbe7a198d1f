"""``cats redeploy BOM``: re-provision the Plant a BOM names, re-execute there, record the verdict.

A BOM links its Order, whose Structure links the hashed Pulumi program. Redeploying
materializes that program from the CAS into a fresh directory (every block verified),
provisions it with the Pulumi Automation API, reads the Plant's addresses from the stack
outputs, re-executes the Order on that Plant's Ray and records a new Invoice and a
Verification record. A ``local`` Structure needs no Pulumi: it re-executes on embedded Ray.

The Plant's Ray Jobs API and Kubo RPC have no public Service: redeploy reaches both through
the Kubernetes API (``kubectl port-forward`` with the stack's kubeconfig output, loopback only),
pushes the Order's blocks into the Plant's Kubo (one verified CAR import) and submits the job,
whose workers read the blocks from that Kubo's in-cluster address.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from ..cas import CID, _unixfs
from ..errors import InvalidInputError, ProvisionError, RecordError
from ..execution import KuboPush, build_environment, check_compatible, environment_cache_dir, load_environment
from ..execution._portforward import PortForward, require_loopback, service_target
from ..execution._provisioner import PlantOutputs, Provisioner
from ..records import OrderRecord, StructureRecord
from ._node import Node
from ._structure import SECRET_PLACEHOLDER, check_recorded_pins, recorded_cli_version
from ._verify import VerifyOutcome, load_bom, verify

__all__ = [
    "RedeployOutcome",
    "materialize_program",
    "plant_access",
    "redeploy",
    "required_secrets",
    "use_program_environment",
]


@dataclass(frozen=True)
class RedeployOutcome:
    """What a redeploy did.

    Attributes:
        bom: The BOM redeployed.
        structure: Its Structure's CID.
        cloud: ``local`` or the cloud provisioned.
        stack: The stack provisioned.
        program_dir: Where the program was materialized (None for ``local``).
        action: ``preview`` (nothing executed) or ``verify`` (re-executed and compared).
        preview: Pulumi's change summary when previewing.
        plant: The Plant's addresses (None for ``local`` and previews).
        verification: The re-execution's verdict (None for previews).
        destroyed: True when the Plant was torn down afterwards.
    """

    bom: CID
    structure: CID
    cloud: str
    stack: str
    program_dir: Path | None
    action: Literal["preview", "verify"]
    preview: str | None
    plant: PlantOutputs | None
    verification: VerifyOutcome | None
    destroyed: bool


def materialize_program(node: Node, structure: StructureRecord, target: Path) -> Path:
    """Write the Structure's Pulumi program to ``target`` (which must not exist), verifying every block."""
    if structure.program is None:
        raise InvalidInputError("expected a Structure with a program, found a local Structure")
    _unixfs.get(node.store, structure.program, target)
    if not (target / "Pulumi.yaml").is_file():
        raise RecordError(f"expected Pulumi.yaml in the Structure's program {structure.program}, found none")
    return target


def use_program_environment(node: Node, structure: StructureRecord, program_dir: Path) -> Path | None:
    """Build the Structure's Environment from the CAS and make the materialized program run in it.

    The virtualenv is built from the Environment's wheels in ``node``'s store, offline (no
    package index: a fresh node that imported the BOM's CAR has them), into the Environment cache
    keyed by its CID, and ``program_dir/Pulumi.yaml`` gets ``runtime.options.virtualenv`` set to
    it, so the Pulumi engine runs the program with exactly the SDK versions the Structure's CID
    covers. The hashed program is unchanged in the CAS; only this deployment copy names a path.
    A ``cats/structure@1`` Structure has no Environment: returns None and changes nothing.

    Returns:
        The virtualenv, or None when the Structure links no Environment.

    Raises:
        ExecutionError: the Environment needs another interpreter or platform, or uv failed.
        BlockNotFoundError: a wheel is missing from the store.
    """
    if structure.environment is None:
        return None
    check_compatible(load_environment(node.store, structure.environment), structure.environment)
    built = build_environment(node.store, structure.environment, environment_cache_dir(node.home))
    venv = built.python.parent.parent
    path = program_dir / "Pulumi.yaml"
    project = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(project, dict):
        raise RecordError(
            f"expected a YAML mapping in the Structure's Pulumi.yaml, found {type(project).__name__}"
        )
    runtime = project.get("runtime")
    runtime = {"name": runtime} if isinstance(runtime, str) else dict(runtime or {"name": "python"})
    options = dict(runtime.get("options") or {})
    options.update(virtualenv=str(venv), toolchain="pip")
    runtime["options"] = options
    project["runtime"] = runtime
    path.write_text(yaml.safe_dump(project, sort_keys=False), encoding="utf-8")
    return venv


def required_secrets(program_dir: Path, stack: str) -> list[str]:
    """Config keys the Structure recorded as secret: their values must be supplied to deploy."""
    project = yaml.safe_load((program_dir / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
    config_dir = Path(str(project.get("stackConfigDir") or "."))
    path = program_dir / config_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise RecordError(f"expected {config_dir / path.name} in the Structure's program, found none")
    config = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
    return sorted(k for k, v in config.items() if v == SECRET_PLACEHOLDER)


@dataclass(frozen=True)
class PlantAccess:
    """How this process reaches a Plant: loopback forwards only.

    Attributes:
        ray_address: The Ray Jobs API on a loopback port.
        kubo: Where the Order's blocks are pushed (loopback) and read (in-cluster); None when
            the workers read a gateway the caller named instead.
    """

    ray_address: str
    kubo: KuboPush | None


@contextmanager
def plant_access(
    plant: PlantOutputs,
    *,
    ray_address: str | None = None,
    cas_url: str | None = None,
    which: Callable[[str], str | None] | None = None,
) -> Iterator[PlantAccess]:
    """Port-forward to the Plant's Ray Jobs API and Kubo RPC with its kubeconfig, for a ``with`` block.

    Args:
        plant: The stack's outputs (in-cluster addresses and the kubeconfig).
        ray_address: A Ray Jobs address the caller forwarded itself (must be loopback).
        cas_url: A gateway the workers read instead of the Plant's Kubo (nothing is pushed).
        which: Locates ``kubectl``.

    Raises:
        InvalidInputError: ``ray_address`` is not a loopback address.
        ProvisionError: The stack lacks an output, kubectl is missing, or a forward failed.
    """
    if ray_address is not None:
        require_loopback(ray_address, "the Ray Jobs address")
    needs_forward = ray_address is None or cas_url is None
    if needs_forward and not plant.kubeconfig:
        raise ProvisionError("the Plant's stack exported no kubeconfig to port-forward with")
    locate = which or shutil.which
    with ExitStack() as stack:
        if ray_address is None:
            if not plant.ray_address:
                raise ProvisionError("the Plant's stack exported no rayJobsAddress to run the Order on")
            target = service_target(plant.ray_address, "rayJobsAddress")
            ray_address = stack.enter_context(PortForward(str(plant.kubeconfig), target, which=locate))
        kubo = None
        if cas_url is None:
            if not plant.kubo_rpc:
                raise ProvisionError("the Plant's stack exported no kuboRpcAddress to ship the blocks to")
            target = service_target(plant.kubo_rpc, "kuboRpcAddress")
            push = stack.enter_context(PortForward(str(plant.kubeconfig), target, which=locate))
            kubo = KuboPush(require_loopback(push, "the Kubo RPC forward"), plant.kubo_rpc)
        yield PlantAccess(require_loopback(ray_address, "the Ray Jobs address"), kubo)


def redeploy(
    node: Node,
    bom_cid: CID,
    *,
    preview: bool = False,
    destroy: bool = False,
    backend_url: str | None = None,
    secrets: Mapping[str, str] | None = None,
    secrets_provider: str | None = None,
    ray_address: str | None = None,
    cas_url: str | None = None,
    env: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RedeployOutcome:
    """Re-provision the BOM's Plant, re-execute its Order there and record the verdict.

    Args:
        node: The node whose store holds the BOM and everything it links (e.g. after
            ``cats car import``).
        bom_cid: The BOM to redeploy.
        preview: Only run ``pulumi preview``; execute nothing.
        destroy: Tear the Plant down after verifying.
        backend_url: Pulumi state backend; a local file backend under the home by default.
        secrets: Values for the config keys the Structure recorded as secret.
        secrets_provider: Pulumi secrets provider of the new stack (``awskms://...``); without
            one a local backend needs ``PULUMI_CONFIG_PASSPHRASE`` (or ``..._FILE``).
        ray_address: A loopback Ray Jobs address forwarded by the caller (default: redeploy
            port-forwards to the stack's ``rayJobsAddress`` with its kubeconfig).
        cas_url: An IPFS gateway the Plant's workers read blocks from (default: the blocks are
            pushed to the Plant's own Kubo through a port-forward and read there).
        env: Extra environment for the Pulumi engine.
        which: Locates executables (``pulumi``, ``kubectl``).
        on_progress: ``(done, total)`` task progress of the re-execution.

    Raises:
        ProvisionError: Pulumi is missing, credentials are missing, a secret was not supplied,
            or provisioning failed.
    """
    bom = load_bom(node, bom_cid)
    order = node.load(bom.order)
    if not isinstance(order, OrderRecord):
        raise RecordError(f"expected the BOM's order {bom.order} to be a cats/order record")
    structure = node.load(order.structure)
    if not isinstance(structure, StructureRecord):
        raise RecordError(f"expected the Order's structure {order.structure} to be a cats/structure record")
    if structure.cloud == "local":
        if preview:
            summary = "local Plant: embedded Ray and this node's blockstore; nothing to provision"
            return RedeployOutcome(
                bom_cid,
                order.structure,
                "local",
                structure.stack,
                None,
                "preview",
                summary,
                None,
                None,
                False,
            )
        outcome = verify(node, bom_cid, address=ray_address, cas_url=cas_url, on_progress=on_progress)
        return RedeployOutcome(
            bom_cid, order.structure, "local", structure.stack, None, "verify", None, None, outcome, False
        )
    if ray_address is not None:  # refused before anything is materialized or provisioned
        require_loopback(ray_address, "the Ray Jobs address")
    work = node.home / "redeploy" / f"{bom_cid}-{time.time_ns()}"
    program_dir = materialize_program(node, structure, work / "program")
    check_recorded_pins(program_dir)  # the same SDKs and plugins as hashed, or nothing deploys
    provisioner = Provisioner(
        program_dir,
        structure.stack,
        structure.cloud,
        node.home / "pulumi-state",
        backend_url=backend_url,
        secrets=dict(secrets or {}),
        env=dict(env or {}),
        secrets_provider=secrets_provider,
        cli_version=recorded_cli_version(program_dir),  # the Structure's CLI, installed if need be
        **({"which": which} if which is not None else {}),
    )
    provisioner.check_prerequisites()
    missing = [k for k in required_secrets(program_dir, structure.stack) if k not in (secrets or {})]
    if missing:
        raise ProvisionError(
            f"the Structure recorded secret config keys whose values are never hashed: supply "
            f"{', '.join(missing)} (cats redeploy --secret KEY=VALUE)"
        )
    if use_program_environment(node, structure, program_dir) is not None:
        # A built Environment's tree is checked against its recorded digest: no bytecode in it.
        provisioner.env = {**provisioner.env, "PYTHONDONTWRITEBYTECODE": "1"}
    if preview:
        summary = provisioner.preview()
        return RedeployOutcome(
            bom_cid, order.structure, structure.cloud, structure.stack, program_dir, "preview",
            summary, None, None, False,
        )  # fmt: skip
    plant = provisioner.up()
    try:
        with plant_access(plant, ray_address=ray_address, cas_url=cas_url, which=which) as access:
            outcome = verify(
                node,
                bom_cid,
                address=access.ray_address,
                cas_url=cas_url,
                kubo=access.kubo,
                on_progress=on_progress,
            )
    finally:
        if destroy:
            provisioner.destroy()
    return RedeployOutcome(
        bom_cid, order.structure, structure.cloud, structure.stack, program_dir, "verify",
        None, plant, outcome, destroy,
    )  # fmt: skip
