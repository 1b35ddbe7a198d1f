"""Check a CAT Node's Pulumi program against its policy pack, offline, one stack per process.

The rules and the mocked runner live in the project's ``policies`` package, which ``cats_runtime``
never imports: the runner is started as ``python -m policies.offline`` in the project directory,
so the package only depends on the JSON it prints. One process per stack because Pulumi's mocks
are process-wide state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from ..errors import InvalidInputError, NotFoundError
from ..execution import require_extra

__all__ = ["PolicyReport", "PolicyViolation", "StackPolicyResult", "check_policies"]

Enforcement = Literal["mandatory", "advisory"]
_TIMEOUT_S = 300


@dataclass(frozen=True)
class PolicyViolation:
    """One rule that failed on one resource (or on the stack as a whole)."""

    policy: str
    enforcement: Enforcement
    message: str
    urn: str | None
    type: str | None
    name: str | None


@dataclass(frozen=True)
class StackPolicyResult:
    """The outcome for one stack."""

    stack: str
    resources: int
    violations: tuple[PolicyViolation, ...]

    @property
    def passed(self) -> bool:
        """True when no mandatory rule failed."""
        return not self.mandatory

    @property
    def mandatory(self) -> tuple[PolicyViolation, ...]:
        """Violations that block a deployment."""
        return tuple(v for v in self.violations if v.enforcement == "mandatory")

    @property
    def advisory(self) -> tuple[PolicyViolation, ...]:
        """Violations that only warn."""
        return tuple(v for v in self.violations if v.enforcement != "mandatory")


@dataclass(frozen=True)
class PolicyReport:
    """The outcome for every stack checked, in the order they were checked."""

    project: Path
    stacks: tuple[StackPolicyResult, ...]

    @property
    def passed(self) -> bool:
        """True when no stack has a mandatory violation."""
        return all(s.passed for s in self.stacks)


def _stack_dir(project_dir: Path) -> Path:
    project_file = project_dir / "Pulumi.yaml"
    if not project_file.is_file():
        raise InvalidInputError(f"expected a Pulumi project (Pulumi.yaml) in {project_dir}, found none")
    try:
        project = yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{project_file} is not valid YAML: {exc}") from exc
    if not isinstance(project, dict) or not isinstance(project.get("name"), str):
        raise InvalidInputError(f"expected a 'name' in {project_file}, found {project!r}")
    if not (project_dir / "policies" / "offline.py").is_file():
        raise InvalidInputError(f"expected the policy pack {project_dir / 'policies'}, found none")
    return project_dir / str(project.get("stackConfigDir", "."))


def _known_stacks(stack_dir: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in stack_dir.glob("Pulumi.*.yaml"))


def _parse_violation(raw: Any, stack: str) -> PolicyViolation:
    if not isinstance(raw, dict) or raw.get("enforcement") not in ("mandatory", "advisory"):
        raise InvalidInputError(f"stack {stack!r}: expected a violation object, found {raw!r}")
    return PolicyViolation(
        policy=str(raw.get("policy")),
        enforcement=cast(Enforcement, raw["enforcement"]),
        message=str(raw.get("message")),
        urn=raw.get("urn"),
        type=raw.get("type"),
        name=raw.get("name"),
    )


def _run_stack(project_dir: Path, stack: str) -> StackPolicyResult:
    command = [
        sys.executable,
        "-m",
        "policies.offline",
        "--project",
        str(project_dir),
        "--stack",
        stack,
        "--json",
    ]
    # The project directory must be the working directory so that `policies` is importable.
    completed = subprocess.run(  # noqa: S603 - fixed argv, no shell
        command, cwd=project_dir, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )
    try:
        document = json.loads(completed.stdout)
    except json.JSONDecodeError:
        document = None
    if completed.returncode not in (0, 1) or not isinstance(document, dict) or "violations" not in document:
        detail = document.get("error") if isinstance(document, dict) else completed.stderr.strip()[-2000:]
        raise InvalidInputError(
            f"stack {stack!r}: the offline policy run failed (exit {completed.returncode}): {detail}"
        )
    violations = tuple(_parse_violation(v, stack) for v in document["violations"])
    return StackPolicyResult(stack=stack, resources=int(document.get("resources", 0)), violations=violations)


def check_policies(project_dir: Path, stacks: Sequence[str] | None = None) -> PolicyReport:
    """Run the policy pack on each stack of a CAT Node program under Pulumi's mocks.

    Args:
        project_dir: The directory holding ``Pulumi.yaml``, ``__main__.py`` and ``policies/``.
        stacks: Stack names to check; every stack config in the project when None.

    Returns:
        The violations of every stack. Mandatory violations do not raise: the caller decides.

    Raises:
        InvalidInputError: ``project_dir`` is not a Pulumi project with a policy pack, or a run failed.
        MissingExtraError: The IaC extra (Pulumi's SDKs) is not installed.
        NotFoundError: A named stack has no config file.
    """
    project_dir = Path(project_dir).resolve()
    stack_dir = _stack_dir(project_dir)
    # The runner imports Pulumi's SDK and policy SDK in a child process: check here, where the
    # error can still say which extra to install, rather than relay the child's ImportError.
    require_extra("iac", "pulumi", "pulumi_policy", needed_for="`cats policy check`")
    known = _known_stacks(stack_dir)
    wanted = list(stacks) if stacks is not None else known
    for stack in wanted:
        if stack not in known:
            raise NotFoundError(f"expected a stack among {known}, found {stack!r}")
    return PolicyReport(project=project_dir, stacks=tuple(_run_stack(project_dir, s) for s in wanted))
