"""Infrastructure commands: the Structure of a stack, offline policy checks, redeploying a BOM's Plant."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidInputError
from ..operations import (
    Node,
    PolicyReport,
    StructureCoverage,
    check_policies,
    describe_structure,
    redeploy,
    store_structure,
)
from ..operations._structure import ProgramEnvironment, home_environments
from ._app import cid_arg, command_set, emit, progress, state
from ._verdict import report_verification

__all__ = ["cli"]

cli = command_set()  # this module's commands; cli/_main.py adds them to `cats`


def _coverage_json(c: StructureCoverage, stored: bool) -> dict[str, Any]:
    return {
        "structure": str(c.cid),
        "program": str(c.record.program),
        "cloud": c.record.cloud,
        "stack": c.record.stack,
        "stored": stored,
        "files": list(c.files),
        "plugins": dict(c.plugins),
        "locks": [{"path": lock.path, "cid": str(lock.cid), "pins": dict(lock.pins)} for lock in c.locks],
        "kubernetes_version": c.kubernetes_version,
        "charts": [
            {"name": ch.name, "version": ch.version, "repository": ch.repository, "source": ch.source}
            for ch in c.charts
        ],
        "images": [
            {"key": im.key, "image": im.image, "digest": im.digest, "source": im.source} for im in c.images
        ],
        "environment": None if c.environment is None else _environment_json(c.environment),
    }


def _environment_json(e: ProgramEnvironment) -> dict[str, Any]:
    env = e.record
    return {
        "cid": str(e.cid),
        "reused": e.reused,
        "python": env.python,
        "implementation": env.implementation,
        "platform": env.platform,
        "size": sum(d.size for d in env.distributions),
        "distributions": [
            {"name": d.name, "version": d.version, "filename": d.filename, "sha256": d.sha256, "size": d.size}
            for d in env.distributions
        ],
    }


def _coverage_text(c: StructureCoverage, stored: bool) -> str:
    unset = "unset (the cloud's default at deploy time: not pinned)"
    lines = [
        f"structure: {c.cid}" + (" (stored)" if stored else ""),
        f"program: {c.record.program}",
        f"cloud: {c.record.cloud}  stack: {c.record.stack}",
        "kubernetes: "
        + (c.kubernetes_version or ("the cluster's own" if c.record.cloud == "existing" else unset)),
        "plugins: " + ", ".join(f"{n}=={v or 'not installed'}" for n, v in c.plugins.items()),
    ]
    lines += [f"lock: {lock.path} {lock.cid} ({len(lock.pins)} Pulumi SDK pins agree)" for lock in c.locks]
    if not c.locks:
        lines.append("lock: none (the program's dependencies are not pinned)")
    lines += [f"chart: {ch.name} {ch.version or 'unpinned'} from {ch.repository or '?'}" for ch in c.charts]
    lines += [f"image: {im.key} {im.image} ({im.source})" for im in c.images]
    if c.environment is not None:
        env = c.environment.record
        size = sum(d.size for d in env.distributions)
        how = "from this home's memo" if c.environment.reused else "resolved from the index"
        lines.append(
            f"environment: {c.environment.cid} ({len(env.distributions)} wheels, "
            f"{size / 1e6:.1f} MB, {env.implementation} {env.python} {env.platform}; {how})"
        )
        lines += [f"  {d.name}=={d.version}" for d in env.distributions]
    lines.append(f"files: {len(c.files)}")
    lines += [f"  {name}" for name in c.files]
    return "\n".join(lines)


@cli.command("structure")
@click.option(
    "--dir",
    "program_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    metavar="PROGRAM_DIR",
    help="The Pulumi program (Pulumi.yaml, __main__.py, components/, policies/, stacks/).",
)
@click.option(
    "--stack", required=True, metavar="ORG", help="The stack (organization) whose Structure to build."
)
@click.option("--store", "do_store", is_flag=True, help="Store the program and the record in the CATs home.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def structure_command(program_dir: Path, stack: str, do_store: bool, as_json: bool) -> None:
    """Print the Structure CID of a stack and what it covers, without provisioning anything.

    The CID is the one `cats run --structure PROGRAM_DIR --stack ORG` records; it links the
    Environment of the program's requirements.lock (every wheel's hash). Nothing is written
    unless --store is given: without it the Environment comes from the home's memo when an
    earlier --store resolved the same lock, else its wheels are downloaded to hash them. Exit 2
    when the program, the stack or a lock is refused (a missing or unhashed requirements.lock).
    """
    if do_store:
        with Node.open(state().home) as node:
            memo, _ = home_environments(node.home)
            coverage = describe_structure(program_dir, stack, node.store, memo=memo)
            store_structure(coverage.record, node.store)
    else:
        memo, source = home_environments(state().home)
        coverage = describe_structure(program_dir, stack, None, memo=memo, source=source)
    emit(as_json, _coverage_json(coverage, do_store), _coverage_text(coverage, do_store))


@cli.group()
def policy() -> None:
    """Check the CAT Node's Pulumi program against the policy pack, offline."""


def _report_json(report: PolicyReport) -> dict[str, Any]:
    return {
        "project": report.project,
        "passed": report.passed,
        "stacks": [
            {
                "stack": s.stack,
                "resources": s.resources,
                "passed": s.passed,
                "violations": [
                    {
                        "policy": v.policy,
                        "enforcement": v.enforcement,
                        "resource": v.urn or v.name,
                        "type": v.type,
                        "message": v.message,
                    }
                    for v in s.violations
                ],
            }
            for s in report.stacks
        ],
    }


def _report_text(report: PolicyReport) -> str:
    lines = []
    for s in report.stacks:
        verdict = "ok" if s.passed else "FAILED"
        lines.append(
            f"{s.stack}: {verdict} — {s.resources} resources, {len(s.mandatory)} mandatory and "
            f"{len(s.advisory)} advisory violations"
        )
        for v in s.violations:
            lines.append(f"  [{v.enforcement}] {v.policy}: {v.urn or v.name}: {v.message}")
    return "\n".join(lines)


@policy.command("check")
@click.option(
    "--stack",
    "stacks",
    multiple=True,
    metavar="ORG",
    help="A stack (organization) to check; every stack in stacks/ when omitted.",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The Pulumi project directory (Pulumi.yaml, __main__.py, policies/).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
def policy_check(stacks: tuple[str, ...], project: Path, as_json: bool) -> None:
    """Run every policy on every resource the program registers (under Pulumi mocks).

    Exits 8 when a mandatory policy fails; advisory findings are printed but do not fail.
    """
    report = check_policies(project, list(stacks) or None)
    emit(as_json, _report_json(report), _report_text(report))
    if not report.passed:
        sys.exit(8)


def _parse_secret(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidInputError(f"expected --secret KEY=VALUE, found {text!r}")
    return key, value


@cli.command("redeploy")
@click.argument("bom")
@click.option("--preview", is_flag=True, help="Only preview the Plant (pulumi preview); execute nothing.")
@click.option("--destroy", is_flag=True, help="Tear the Plant down after verifying.")
@click.option(
    "--backend",
    metavar="URL",
    help="Pulumi state backend (default: a local file backend under the CATs home).",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="KEY=VALUE",
    help="A value for a config key the Structure recorded as secret (never hashed).",
)
@click.option(
    "--secrets-provider",
    metavar="URL",
    help="Pulumi secrets provider of the stack (awskms://...); else PULUMI_CONFIG_PASSPHRASE is required.",
)
@click.option(
    "--ray-address",
    metavar="URL",
    help="A loopback Ray Jobs address you forwarded (default: redeploy port-forwards with the kubeconfig).",
)
@click.option(
    "--cas-url",
    metavar="URL",
    help="A gateway the Plant's workers read blocks from (default: pushed to the Plant's Kubo).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def redeploy_command(
    bom: str,
    preview: bool,
    destroy: bool,
    backend: str | None,
    secrets: tuple[str, ...],
    secrets_provider: str | None,
    ray_address: str | None,
    cas_url: str | None,
    as_json: bool,
) -> None:
    """Re-provision a BOM's Plant from its hashed Pulumi program, re-execute there and verify.

    A local Structure re-executes on the embedded Ray with no Pulumi at all. Exit 4 when the
    outputs differ, 7 when provisioning is impossible (the message says what to install or set).
    """
    cid = cid_arg(bom)
    values = dict(_parse_secret(s) for s in secrets)
    with Node.open(state().home) as node, progress("re-executing", None, enabled=not as_json) as advance:
        outcome = redeploy(
            node,
            cid,
            preview=preview,
            destroy=destroy,
            backend_url=backend,
            secrets=values,
            secrets_provider=secrets_provider,
            ray_address=ray_address,
            cas_url=cas_url,
            on_progress=lambda done, total: advance(1),
        )
    data: dict[str, Any] = {
        "bom": outcome.bom,
        "structure": outcome.structure,
        "cloud": outcome.cloud,
        "stack": outcome.stack,
        "action": outcome.action,
        "program_dir": outcome.program_dir,
        "preview": outcome.preview,
        "plant": None
        if outcome.plant is None
        else {"ray_address": outcome.plant.ray_address, "kubo_rpc": outcome.plant.kubo_rpc},
        "destroyed": outcome.destroyed,
    }
    head = f"plant: {outcome.cloud} (stack {outcome.stack}, structure {outcome.structure})"
    if outcome.verification is None:
        emit(as_json, data, f"{head}\npreview: {outcome.preview}")
        return
    report_verification(outcome.verification, as_json, data, head)
