"""Provisioning a Plant from a hashed Pulumi program with the Pulumi Automation API.

The program directory comes out of the CAS (the Structure record's ``program``); this module
only drives Pulumi on it. Everything that needs the ``pulumi`` CLI is behind
:meth:`Provisioner.check_prerequisites`, which says exactly what to install or set when it is
missing, so callers never meet a bare ``FileNotFoundError``.
"""

from __future__ import annotations

import os
import shutil
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidInputError, ProvisionError
from ._extras import require_extra

__all__ = ["CREDENTIAL_HINTS", "PlantOutputs", "Provisioner", "missing_credentials"]

Cloud = Literal["aws", "gcp", "azure", "existing"]

# Where each cloud's Pulumi provider finds credentials; one of each group must be present.
CREDENTIAL_HINTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "aws": (
        (
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ),
        ("~/.aws/credentials", "~/.aws/config"),
        "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (or run `aws configure`)",
    ),
    "gcp": (
        ("GOOGLE_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_OAUTH_ACCESS_TOKEN"),
        ("~/.config/gcloud/application_default_credentials.json",),
        "set GOOGLE_APPLICATION_CREDENTIALS (or run `gcloud auth application-default login`)",
    ),
    "azure": (
        ("ARM_CLIENT_ID", "ARM_USE_MSI", "ARM_USE_OIDC"),
        ("~/.azure/azureProfile.json",),
        "set ARM_CLIENT_ID/ARM_CLIENT_SECRET/ARM_TENANT_ID/ARM_SUBSCRIPTION_ID (or run `az login`)",
    ),
    "existing": (
        ("KUBECONFIG",),
        ("~/.kube/config",),
        "set KUBECONFIG or the stack's cats:kubeconfig to a kubeconfig file for the cluster",
    ),
}

SECRETS_KEY_HINT = (
    "a local Pulumi state backend encrypts the stack's secrets with a passphrase: set "
    "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE, or name a secrets provider "
    "(cats redeploy --secrets-provider awskms://..., gcpkms://..., azurekeyvault://...)"
)
_PASSPHRASE_VARS = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
POLICY_PACK = "policies"
"""The program's policy pack (hashed in its Structure): passed to every preview and up."""

PULUMI_INSTALL_HINT = (
    "the pulumi CLI is not installed (needed to provision a Plant): install it from "
    "https://www.pulumi.com/docs/install/ and make sure `pulumi` is on PATH"
)

# Stack outputs the CatNode program exports (see __main__.py); other outputs are kept verbatim.
RAY_OUTPUT = "rayJobsAddress"
KUBO_OUTPUT = "kuboRpcAddress"
KUBECONFIG_OUTPUT = "kubeconfig"


def missing_credentials(cloud: str, env: Mapping[str, str] | None = None) -> str | None:
    """What to set for ``cloud``'s credentials, or None when some are present."""
    env = os.environ if env is None else env
    try:
        variables, files, hint = CREDENTIAL_HINTS[cloud]
    except KeyError:
        raise InvalidInputError(f"expected a cloud in {sorted(CREDENTIAL_HINTS)}, found {cloud!r}") from None
    if any(env.get(v) for v in variables):
        return None
    if any(Path(f).expanduser().exists() for f in files):
        return None
    return f"no {cloud} credentials found: {hint}"


@dataclass(frozen=True)
class PlantOutputs:
    """What a provisioned Plant exposes to CATs."""

    ray_address: str | None
    kubo_rpc: str | None
    raw: dict[str, Any] = field(default_factory=dict)
    #: The cluster's kubeconfig (a secret output; never in ``raw``, never recorded): what
    #: redeploy port-forwards with.
    kubeconfig: str | None = field(default=None, repr=False)


@dataclass
class Provisioner:
    """Drives ``pulumi preview/up/destroy`` on one materialized program directory.

    Args:
        program_dir: A directory holding Pulumi.yaml, __main__.py, components/ and stacks/.
        stack: The organization's stack name (``stacks/Pulumi.<stack>.yaml``).
        cloud: The cloud the Structure targets (selects the credentials check).
        backend_url: Pulumi state backend; defaults to a local file backend under ``state_dir``.
        state_dir: Where the local file backend keeps its state.
        secrets: Values for config keys the Structure recorded as secret (never hashed).
        env: Extra environment for the Pulumi engine.
        secrets_provider: Pulumi secrets provider of a new stack (``awskms://...``); without
            one a local backend needs a non-empty passphrase.
        cli_version: The Pulumi CLI version the Structure pinned: installed under
            ``state_dir``'s parent (``pulumi-cli/<version>``) when the CLI on PATH is another.
    """

    program_dir: Path
    stack: str
    cloud: str
    state_dir: Path
    backend_url: str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    which: Callable[[str], str | None] = shutil.which
    secrets_provider: str | None = None
    cli_version: str | None = None

    def __post_init__(self) -> None:
        if not (self.program_dir / "Pulumi.yaml").is_file():
            raise InvalidInputError(f"expected a Pulumi program in {self.program_dir}, found no Pulumi.yaml")
        if self.cloud == "local":
            raise InvalidInputError("a local Structure needs no provisioning")

    @property
    def backend(self) -> str:
        """The state backend URL in use."""
        return self.backend_url or f"file://{self.state_dir}"

    def check_prerequisites(self) -> None:
        """Raise ProvisionError naming what to install or set before Pulumi can run.

        Raises:
            MissingExtraError: The IaC extra (Pulumi's Python SDK) is not installed.
            ProvisionError: The pulumi CLI or the cloud's credentials are missing.
        """
        require_extra("iac", "pulumi", needed_for=f"provisioning the {self.cloud} Plant")
        if self.which("pulumi") is None and not self._pinned_cli().is_file():
            pinned = f" (version {self.cli_version}, the Structure's pin)" if self.cli_version else ""
            raise ProvisionError(PULUMI_INSTALL_HINT + pinned)
        env = {**os.environ, **self.env}
        # An existing cluster's kubeconfig given as the stack's secret is its credentials.
        given = self.cloud == "existing" and bool(self.secrets.get("cats:kubeconfig"))
        problem = None if given else missing_credentials(self.cloud, env)
        if problem:
            raise ProvisionError(problem)
        local = self.backend.startswith("file://")
        if local and not self.secrets_provider and not any(env.get(v) for v in _PASSPHRASE_VARS):
            raise ProvisionError(SECRETS_KEY_HINT)
        if not (self.program_dir / POLICY_PACK / "PulumiPolicy.yaml").is_file():
            raise ProvisionError(
                f"expected the policy pack {POLICY_PACK}/PulumiPolicy.yaml in the program "
                f"{self.program_dir}, found none: nothing deploys without it"
            )

    def _pinned_cli(self) -> Path:
        return self.state_dir.parent / "pulumi-cli" / str(self.cli_version) / "bin" / "pulumi"

    def operation_args(self) -> dict[str, Any]:
        """Keyword arguments of every ``Stack.preview`` and ``Stack.up``: the policy pack gates both."""
        return {"policy_packs": [str(self.program_dir / POLICY_PACK)], "on_output": None}

    def cli_install_args(self) -> dict[str, Any] | None:
        """Arguments of ``PulumiCommand.install`` for the pinned CLI (None without a pin)."""
        if self.cli_version is None:
            return None
        from semver import VersionInfo

        return {"root": str(self._pinned_cli().parent.parent), "version": VersionInfo.parse(self.cli_version)}

    def _command(self) -> Any:
        """The pinned Pulumi CLI: the one on PATH when it is that version, else installed."""
        args = self.cli_install_args()
        if args is None:
            return None
        from pulumi import automation as auto

        try:
            on_path = auto.PulumiCommand(version=args["version"])
            if on_path.version is not None and on_path.version.compare(args["version"]) == 0:
                return on_path
        except Exception:  # noqa: S110 - absent or too old: install the pinned one below
            pass
        try:
            return auto.PulumiCommand.install(**args)
        except Exception as exc:
            # The SDK's installer leaves its NamedTemporaryFile open when the download fails; its
            # frame lives on in this traceback, so the file would be closed only by the cyclic GC
            # (a ResourceWarning at some later point). Clearing the frames closes it here.
            traceback.clear_frames(exc.__traceback__)
            raise ProvisionError(
                f"could not install the pinned pulumi CLI {self.cli_version} into {args['root']}: "
                f"{_first_line(exc)}"
            ) from exc

    def workspace_env(self) -> dict[str, str]:
        """Environment for the Pulumi engine: the backend and the caller's extra variables."""
        # The passphrase (or secrets provider) is the caller's: an empty one would encrypt the
        # stack's secrets with a key anyone can derive (check_prerequisites refuses it).
        return {"PULUMI_BACKEND_URL": self.backend, **self.env}

    def _stack(self) -> Any:
        self.check_prerequisites()
        from pulumi import automation as auto  # imported late: only provisioning needs it

        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            opts = auto.LocalWorkspaceOptions(
                work_dir=str(self.program_dir),
                env_vars=self.workspace_env(),
                secrets_provider=self.secrets_provider,
                pulumi_command=self._command(),
            )
            stack = auto.create_or_select_stack(
                stack_name=self.stack, work_dir=str(self.program_dir), opts=opts
            )
            for key, value in sorted(self.secrets.items()):
                stack.set_config(key, auto.ConfigValue(value=value, secret=True))
        except FileNotFoundError as exc:
            raise ProvisionError(PULUMI_INSTALL_HINT) from exc
        except auto.errors.CommandError as exc:
            raise ProvisionError(f"pulumi could not open stack {self.stack!r}: {_first_line(exc)}") from exc
        return stack

    def preview(self) -> str:
        """Run ``pulumi preview``; returns its change summary."""
        from pulumi import automation as auto

        try:
            result = self._stack().preview(**self.operation_args())
        except auto.errors.CommandError as exc:
            raise ProvisionError(f"pulumi preview failed: {_first_line(exc)}") from exc
        return str(result.change_summary)

    def up(self) -> PlantOutputs:
        """Run ``pulumi up``; returns the Plant's outputs."""
        from pulumi import automation as auto

        try:
            result = self._stack().up(**self.operation_args())
        except auto.errors.CommandError as exc:
            raise ProvisionError(f"pulumi up failed: {_first_line(exc)}") from exc
        return outputs_from(dict(result.outputs))

    def destroy(self) -> None:
        """Run ``pulumi destroy``."""
        from pulumi import automation as auto

        try:
            self._stack().destroy(on_output=None)
        except auto.errors.CommandError as exc:
            raise ProvisionError(f"pulumi destroy failed: {_first_line(exc)}") from exc


def outputs_from(outputs: Mapping[str, Any]) -> PlantOutputs:
    """Read the CatNode's addresses from Automation API outputs (``OutputValue`` or plain)."""
    plain = {k: getattr(v, "value", v) for k, v in outputs.items()}
    ray = plain.get(RAY_OUTPUT)
    kubo = plain.get(KUBO_OUTPUT)
    kubeconfig = plain.get(KUBECONFIG_OUTPUT)
    return PlantOutputs(
        ray_address=str(ray) if ray else None,
        kubo_rpc=str(kubo) if kubo else None,
        raw={
            k: v
            for k, v in plain.items()
            if not getattr(outputs[k], "secret", False) and k != KUBECONFIG_OUTPUT
        },
        kubeconfig=str(kubeconfig) if kubeconfig else None,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
