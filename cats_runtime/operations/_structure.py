"""Structure records: the Pulumi program of a Plant hashed as one UnixFS directory, secrets removed."""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Final, cast

import yaml

from ..cas import CID, BlockStore, _unixfs
from ..errors import InvalidInputError
from ..records import Cloud, StructureRecord
from ._function import DEFAULT_IGNORE

__all__ = [
    "CLOUDS",
    "LOCK_FILES",
    "PINS_FILE",
    "PLUGIN_DISTRIBUTIONS",
    "PROGRAM_DIRS",
    "PROGRAM_FILES",
    "build_structure",
    "local_structure",
    "plugin_pins",
    "sanitize_stack_config",
    "store_structure",
]

CLOUDS: Final = ("local", "aws", "gcp", "azure", "existing")
PROGRAM_FILES: Final = ("Pulumi.yaml", "__main__.py")
LOCK_FILES: Final = ("requirements.txt", "requirements.lock", "uv.lock", "poetry.lock", "Pipfile.lock")
"""Dependency locks included when present: the program is only reproducible with its versions."""
PROGRAM_DIRS: Final = ("components", "policies")
"""Hashed whole: the program's modules and the policy pack that gates its deployment."""
PLUGIN_DISTRIBUTIONS: Final = (
    "pulumi",
    "pulumi-kubernetes",
    "pulumi-aws",
    "pulumi-gcp",
    "pulumi-azure-native",
    "pulumi-policy",
)
"""Each SDK fetches the provider plugin of its own version, so their versions pin the plugins."""
PINS_FILE: Final = "cats-pins.json"
CLOUD_KEYS: Final = ("cats:cloud", "cats:plant")
"""Stack config keys naming the target cloud, first match wins."""
_DROPPED_TOP_LEVEL: Final = ("encryptionsalt", "encryptedkey", "secretsprovider")


def local_structure() -> StructureRecord:
    """The ``local`` Structure: embedded Ray and the local blockstore; nothing to provision."""
    return StructureRecord(cloud="local", stack="local", program=None, outputs=[])


# Stands where a ``secure:`` value was: the key stays (redeploy must know which secrets to ask
# for) but nothing of the ciphertext does, so changing a secret cannot change the CID.
SECRET_PLACEHOLDER = "<secret: supplied at deploy time, never hashed>"  # noqa: S105 - a marker, not a secret


def _strip_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if "secure" in value:
            return SECRET_PLACEHOLDER
        return {k: _strip_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_secrets(v) for v in value]
    return value


def sanitize_stack_config(text: str) -> str:
    """A stack config without secrets, in one canonical YAML form.

    Values written ``{secure: <ciphertext>}`` are replaced by :data:`SECRET_PLACEHOLDER` and the
    top-level ``encryptionsalt`` (plus ``encryptedkey``/``secretsprovider`` of cloud secret
    providers) is removed: ciphertext
    changes each time a secret is set, and a content address must not carry it anywhere.
    Keys are sorted and the flow style fixed, so formatting changes do not change the CID.

    Raises:
        InvalidInputError: the text is not a YAML mapping.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"expected a YAML stack config, found invalid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInputError(f"expected a YAML mapping in the stack config, found {type(data).__name__}")
    data = {k: v for k, v in data.items() if k not in _DROPPED_TOP_LEVEL}
    clean = _strip_secrets(data)
    return yaml.safe_dump(clean, sort_keys=True, default_flow_style=False, allow_unicode=True, width=4096)


def _find_stack_file(program_dir: Path, stack: str) -> tuple[Path, Path]:
    project = yaml.safe_load((program_dir / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
    config_dir = project.get("stackConfigDir") if isinstance(project, dict) else None
    rel = Path(str(config_dir)) if config_dir else Path("stacks")
    for candidate in (rel / f"Pulumi.{stack}.yaml", Path(f"Pulumi.{stack}.yaml")):
        if (program_dir / candidate).is_file():
            return program_dir / candidate, candidate
    raise InvalidInputError(
        f"expected the stack config {rel / f'Pulumi.{stack}.yaml'} in {program_dir}, found none"
    )


def _cloud_of(config_text: str, stack: str) -> Cloud:
    config = (yaml.safe_load(config_text) or {}).get("config") or {}
    for key in CLOUD_KEYS:
        value = config.get(key) if isinstance(config, dict) else None
        if isinstance(value, dict) and "value" in value:  # structured config form
            value = value["value"]
        if value is not None:
            if value not in CLOUDS:
                raise InvalidInputError(
                    f"expected {key} in {list(CLOUDS)} for stack {stack!r}, found {value!r}"
                )
            return cast(Cloud, value)
    raise InvalidInputError(
        f"expected a {CLOUD_KEYS[0]} setting in the config of stack {stack!r}, found none"
    )


def plugin_pins() -> dict[str, str | None]:
    """Installed version of each Pulumi SDK (hence provider plugin); None when not installed."""
    pins: dict[str, str | None] = {}
    for name in PLUGIN_DISTRIBUTIONS:
        try:
            pins[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pins[name] = None
    return pins


def build_structure(program_dir: Path, stack: str, store: BlockStore | None) -> StructureRecord:
    """Hash the Pulumi program of ``stack`` as one UnixFS directory.

    The directory holds ``Pulumi.yaml``, ``__main__.py``, ``components/``, ``policies/`` (the pack
    that gates the deployment), ``cats-pins.json`` (the Pulumi SDK and provider plugin versions), the
    one stack config
    ``Pulumi.<stack>.yaml`` (sanitized: see :func:`sanitize_stack_config`) at its usual place and
    the dependency lock if present; nothing else of ``program_dir`` (other organizations' stacks,
    state, caches) can change the CID.

    Raises:
        InvalidInputError: a required file is missing, or the stack names no known cloud.
    """
    if not stack or "/" in stack or stack.startswith("."):
        raise InvalidInputError(f"expected a stack name, found {stack!r}")
    for name in PROGRAM_FILES:
        if not (program_dir / name).is_file():
            raise InvalidInputError(f"expected {name} in the Pulumi program {program_dir}, found none")
    stack_file, stack_rel = _find_stack_file(program_dir, stack)
    sanitized = sanitize_stack_config(stack_file.read_text(encoding="utf-8"))
    cloud = _cloud_of(sanitized, stack)
    with tempfile.TemporaryDirectory(prefix="cats-structure-") as tmp:
        root = Path(tmp) / "program"
        root.mkdir()
        for name in PROGRAM_FILES + LOCK_FILES:
            if (program_dir / name).is_file():
                shutil.copyfile(program_dir / name, root / name)
        for folder in PROGRAM_DIRS:
            if (program_dir / folder).is_dir():
                shutil.copytree(
                    program_dir / folder, root / folder, ignore=shutil.ignore_patterns(*DEFAULT_IGNORE)
                )
        # The plugin versions the deployment runs with (the SDK and CLI share the `pulumi` version).
        pins = {"plugins": plugin_pins()}
        (root / PINS_FILE).write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (root / stack_rel).parent.mkdir(parents=True, exist_ok=True)
        (root / stack_rel).write_text(sanitized, encoding="utf-8")
        program = _unixfs.add_path(root, store, exclude=DEFAULT_IGNORE, hidden=True).cid
    return StructureRecord(cloud=cloud, stack=stack, program=program, outputs=[])


def store_structure(record: StructureRecord, store: BlockStore) -> CID:
    """Store a Structure record's block and return its CID."""
    block = record.to_block()
    store.put(block)
    return block.cid
