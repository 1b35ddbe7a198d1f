"""Run the policy pack against a Pulumi program without the Pulumi CLI, a cloud or a cluster.

``python -m policies.offline --project DIR --stack ORG [--json]`` loads ``Pulumi.yaml`` and the stack's
config file (``<stackConfigDir>/Pulumi.<ORG>.yaml``) of DIR, runs DIR's ``__main__.py`` under Pulumi's
mocks with that config, and runs every rule of :mod:`policies.rules` on each registered resource and
on the whole stack. ``secure:`` values cannot be decrypted here: they become a placeholder marked
secret, which is all the program and the rules need.

Exit status: 0 when no mandatory rule fails, 1 when one does, 2 on a usage error (missing project,
unknown stack, a program that does not run). Mocks are process-wide state: one stack per process.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import runpy
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format  # type: ignore[import-untyped]
from pulumi.runtime.mocks import MockMonitor
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policies.rules import RESOURCE_POLICIES, STACK_POLICIES, plaintext_secret_keys

__all__ = [
    "SECRET_PLACEHOLDER",
    "STACK_CONFIG_RULE",
    "EngineMonitor",
    "OfflineError",
    "ProgramRefused",
    "RecordingMocks",
    "RegisteredResource",
    "StackConfig",
    "Violation",
    "check_resources",
    "load_stack_config",
    "main",
    "run_program",
]

#: Value a ``secure:`` config entry takes under mocks.
SECRET_PLACEHOLDER = "offline-secret-placeholder"  # noqa: S105 - not a credential


class OfflineError(Exception):
    """A usage error: no such project or stack, or a program that fails to run."""


class ProgramRefused(OfflineError):
    """The program refused a stack value (its input checks raise ValueError): a violation, not a crash."""


#: The rule name under which a refused stack value is reported.
STACK_CONFIG_RULE = "stack-config-valid"


@dataclass(frozen=True)
class StackConfig:
    """A stack's config as the Pulumi language host would hand it to the program."""

    project: str
    stack: str
    values: dict[str, str]
    secret_keys: list[str]


@dataclass
class RegisteredResource:
    """One resource the program registered: its type, name, URN and inputs (camelCase)."""

    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    urn: str = ""


@dataclass(frozen=True)
class Violation:
    """One policy violation."""

    policy: str
    enforcement: str
    message: str
    urn: str | None = None
    type: str | None = None
    name: str | None = None


_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - Pulumi's wire marker of a secret value


def _unwrap_secrets(value: Any) -> Any:
    """Replace Pulumi's secret envelopes by their values, as the policy analyzer hands them to rules."""
    if isinstance(value, dict):
        if _SECRET_SIG in value and "value" in value:
            return _unwrap_secrets(value["value"])
        return {k: _unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(v) for v in value]
    return value


def _mock_outputs(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    """Outputs the providers would compute, enough for the program's ``apply`` chains to run."""
    name = args.name
    outputs: dict[str, Any] = {
        "name": args.inputs.get("name", name),
        "arn": f"arn:aws:mock:::{name}",
        "endpoint": f"{name}.example.invalid",
        "certificateAuthority": {"data": "Q0EK"},
        "masterAuth": {"clusterCaCertificate": "Q0EK"},
        "keyUriWithVersion": f"https://{name}.vault.example.invalid/keys/k/1",
        "principalId": "00000000-0000-0000-0000-000000000001",
        "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.example.invalid/id/{name}"}]}],
        "latestVersion": 1,
        "email": f"{name}@cats-mock.iam.gserviceaccount.com",
    }
    state = {**outputs, **args.inputs}
    identity = state.get("identity")
    if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
        # Azure takes a list of identity IDs but reports a map keyed by them.
        state["identity"] = {
            **identity,
            "userAssignedIdentities": {i: {} for i in identity["userAssignedIdentities"]},
        }
    return state


# What AKS returns for format=exec: kubelogin with the interactive device-code flow.
_AKS_EXEC_KUBECONFIG = base64.b64encode(
    json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "aks", "cluster": {"server": "https://aks.example.invalid:443"}}],
            "users": [
                {
                    "name": "clusterUser",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "kubelogin",
                            "args": ["get-token", "--login", "devicecode", "--server-id", "6dae42f8"],
                        }
                    },
                }
            ],
        }
    ).encode()
).decode()


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that record every registered resource and answer the invokes the program makes."""

    def __init__(self) -> None:
        self.resources: list[RegisteredResource] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        """Record the resource and echo its inputs plus plausible computed outputs."""
        self.resources.append(
            RegisteredResource(args.typ, args.name, _unwrap_secrets(dict(args.inputs)), bool(args.custom))
        )
        return f"{args.name}-id", _mock_outputs(args)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        """Answer the provider functions the cluster components call."""
        function = args.token
        if function == "gcp:organizations/getProject:getProject":
            return {"number": "123456789012", "projectId": "cats-mock"}, []
        if function == "azure-native:authorization:getClientConfig":
            zero = "00000000-0000-0000-0000-000000000000"
            return {"clientId": zero, "objectId": zero, "subscriptionId": zero, "tenantId": zero}, []
        if function == "azure-native:containerservice:listManagedClusterUserCredentials":
            return {"kubeconfigs": [{"name": "clusterUser", "value": _AKS_EXEC_KUBECONFIG}]}, []
        if function == "aws:index/getAvailabilityZones:getAvailabilityZones":
            region = "us-east-1"
            return {"names": [f"{region}a", f"{region}b", f"{region}c"], "zoneIds": []}, []
        return {}, []

    def reset(self) -> None:
        """Forget the resources recorded so far."""
        self.resources.clear()


class EngineMonitor(MockMonitor):
    """Pulumi's mock monitor, plus what the engine does with a component's registered outputs.

    The engine replaces a component's state by the outputs it registers, and stack policies see that
    state; recording them lets the offline run show rules the same view.
    """

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.component_outputs: dict[str, dict[str, Any]] = {}

    def RegisterResourceOutputs(self, request: Any) -> Any:
        """Keep the outputs (secrets unwrapped, unknowns dropped) by URN."""
        outputs = json_format.MessageToDict(request.outputs)
        self.component_outputs[request.urn] = _unwrap_secrets(outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def load_stack_config(project_dir: Path, stack: str) -> StackConfig:
    """Read ``Pulumi.yaml`` and the stack file the way the Pulumi CLI would.

    Structured values (lists, maps) become JSON text, as the language host passes them; ``secure:``
    values become :data:`SECRET_PLACEHOLDER` and are listed as secret keys.

    Raises:
        OfflineError: DIR is not a Pulumi project or the stack has no config file.
    """
    project_file = project_dir / "Pulumi.yaml"
    if not project_file.is_file():
        raise OfflineError(f"expected a Pulumi project (Pulumi.yaml) in {project_dir}, found none")
    project = yaml.safe_load(project_file.read_text()) or {}
    if not isinstance(project, Mapping) or not isinstance(project.get("name"), str):
        raise OfflineError(f"{project_file}: expected a mapping with a 'name', found {project!r}")
    config_dir = project_dir / str(project.get("stackConfigDir", "."))
    stack_file = config_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in config_dir.glob("Pulumi.*.yaml"))
        raise OfflineError(f"unknown stack {stack!r}: expected {stack_file}; stacks found: {known}")
    document = yaml.safe_load(stack_file.read_text()) or {}
    raw = document.get("config") or {} if isinstance(document, Mapping) else {}
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in dict(raw).items():
        if ":" not in str(key):
            key = f"{project['name']}:{key}"
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            values[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        elif isinstance(value, str):
            values[key] = value
        else:
            values[key] = json.dumps(value)
    return StackConfig(str(project["name"]), stack, values, sorted(secret_keys))


def run_program(project_dir: Path, config: StackConfig) -> list[RegisteredResource]:
    """Run the project's ``__main__.py`` under mocks with the stack's config.

    Returns:
        Every resource it registered (components included), each with its URN.

    Raises:
        OfflineError: The program raised.
    """
    mocks = RecordingMocks()
    monitor = EngineMonitor(mocks)
    pulumi.runtime.set_mocks(
        mocks, project=config.project, stack=config.stack, preview=False, monitor=monitor
    )
    pulumi.runtime.set_all_config(config.values, config.secret_keys)
    # The Python language host also hands the program its config through these variables.
    os.environ["PULUMI_CONFIG"] = json.dumps(config.values)
    os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(config.secret_keys)
    main_file = project_dir / "__main__.py"
    if not main_file.is_file():
        raise OfflineError(f"expected the program {main_file}, found none")
    sys.path.insert(0, str(project_dir))
    try:
        # pulumi.runtime.test waits for every registration and re-raises the program's first error.
        pulumi.runtime.test(lambda: runpy.run_path(str(main_file), run_name="__main__"))()  # type: ignore[no-untyped-call]
    except ValueError as exc:  # the components' input checks: the stack asks for something refused
        raise ProgramRefused(str(exc)) from exc
    except Exception as exc:  # any other failure of the program is a usage error here
        raise OfflineError(f"{main_file} failed under mocks: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(project_dir))
    urns: dict[tuple[str, str], str] = {}
    for mock_urn in monitor.resources:
        # The engine leaves the root stack out of its children's type chain; the mock monitor does not.
        urn = mock_urn.replace("::pulumi:pulumi:Stack$", "::")
        qualified, name = urn.split("::")[2:4]
        urns[(qualified.split("$")[-1], name)] = urn
    for resource in mocks.resources:
        resource.urn = urns.get((resource.type, resource.name), "")
    by_mock_urn = {u.replace("::pulumi:pulumi:Stack$", "::"): o for u, o in monitor.component_outputs.items()}
    for resource in mocks.resources:
        if not resource.custom and resource.urn in by_mock_urn:
            # What the engine keeps as the component's state, and what stack rules see.
            resource.inputs = by_mock_urn[resource.urn]
    return mocks.resources


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def check_resources(
    resources: Sequence[RegisteredResource],
    config_keys: Mapping[str, bool] | None = None,
    policy_config: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Violation]:
    """Run every resource rule on each resource, then every stack rule on them all.

    Args:
        resources: What the program registered.
        config_keys: The stack's config keys and whether each is secret; checked by
            ``no-plaintext-secret-config`` even when the program does not record them.
        policy_config: Per-rule configuration (``{"bounded-autoscaling": {"maxNodes": 20}}``).

    Returns:
        The violations, in rule order.
    """
    policy_config = policy_config or {}
    violations: list[Violation] = []

    def level(policy: Any) -> str:
        enforcement = policy.enforcement_level or EnforcementLevel.ADVISORY
        return str(enforcement.value)

    for policy in RESOURCE_POLICIES:
        for resource in resources:
            args = ResourceValidationArgs(
                resource.type,
                resource.inputs,
                resource.urn,
                resource.name,
                _options(),
                None,
                dict(policy_config.get(policy.name, {})),
            )

            def report(
                message: str, urn: str | None = None, _r: RegisteredResource = resource, _p: Any = policy
            ) -> None:
                violations.append(Violation(_p.name, level(_p), message, urn or _r.urn, _r.type, _r.name))

            policy.validate(args, report)
    by_urn = {r.urn: r for r in resources}
    stack_resources = [
        PolicyResource(r.type, r.inputs, r.urn, r.name, _options(), None, None, [], {}) for r in resources
    ]
    for stack_policy in STACK_POLICIES:

        def report_stack(message: str, urn: str | None = None, _p: Any = stack_policy) -> None:
            target = by_urn.get(urn or "")
            violations.append(
                Violation(
                    _p.name,
                    level(_p),
                    message,
                    urn,
                    target.type if target else None,
                    target.name if target else None,
                )
            )

        stack_policy.validate(
            StackValidationArgs(stack_resources, dict(policy_config.get(stack_policy.name, {}))), report_stack
        )
    if config_keys is not None:
        from policies.rules import no_plaintext_secret_config

        already = {v.message for v in violations if v.policy == no_plaintext_secret_config.name}
        for key in plaintext_secret_keys(config_keys):
            message = (
                f"stack config {key!r} looks like a secret but is plaintext; "
                f"set it with `pulumi config set --secret {key}`"
            )
            if message not in already:
                violations.append(
                    Violation(no_plaintext_secret_config.name, level(no_plaintext_secret_config), message)
                )
    return violations


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m policies.offline", description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, type=Path, help="directory holding Pulumi.yaml")
    parser.add_argument("--stack", required=True, help="stack name (stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    options = _parse(argv)  # argparse exits with 2 on bad usage
    project_dir: Path = options.project.resolve()
    violations: list[Violation] = []
    resources: list[RegisteredResource] = []
    try:
        config = load_stack_config(project_dir, options.stack)
        try:
            resources = run_program(project_dir, config)
        except ProgramRefused as refused:
            violations.append(Violation(STACK_CONFIG_RULE, EnforcementLevel.MANDATORY.value, str(refused)))
    except OfflineError as exc:
        if options.json:
            print(json.dumps({"stack": options.stack, "error": str(exc)}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    config_keys = {key: key in config.secret_keys for key in config.values}
    violations.extend(check_resources(resources, config_keys))
    mandatory = [v for v in violations if v.enforcement == EnforcementLevel.MANDATORY.value]
    if options.json:
        document = {
            "project": config.project,
            "stack": config.stack,
            "resources": len(resources),
            "passed": not mandatory,
            "violations": [asdict(v) for v in violations],
        }
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        for v in violations:
            print(f"[{v.enforcement}] {v.policy}: {v.name or '<stack>'} ({v.type or '-'}): {v.message}")
            if v.urn:
                print(f"    {v.urn}")
        verdict = "FAILED" if mandatory else "passed"
        print(
            f"{config.stack}: {verdict} - {len(resources)} resources, {len(mandatory)} mandatory and "
            f"{len(violations) - len(mandatory)} advisory violation(s)"
        )
    return 1 if mandatory else 0


if __name__ == "__main__":
    sys.exit(main())
