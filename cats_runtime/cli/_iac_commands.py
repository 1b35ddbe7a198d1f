"""Infrastructure commands: offline policy checks and redeploying a BOM's Plant."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidInputError
from ..operations import Node, PolicyReport, check_policies, redeploy
from ._app import cid_arg, command_set, emit, progress, state
from ._verdict import report_verification

__all__ = ["cli"]

cli = command_set()  # this module's commands; cli/_main.py adds them to `cats`


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
@click.option("--ray-address", metavar="URL", help="Use this Ray Jobs address instead of the Plant's output.")
@click.option("--cas-url", metavar="URL", help="Where the Plant's workers fetch blocks (default: its Kubo).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def redeploy_command(
    bom: str,
    preview: bool,
    destroy: bool,
    backend: str | None,
    secrets: tuple[str, ...],
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
