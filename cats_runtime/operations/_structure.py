"""Structure records: the Pulumi program of a Plant hashed as one UnixFS directory, secrets removed."""

from __future__ import annotations

import ast
import contextlib
import json
import re
import shutil
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final, cast

import yaml

from ..cas import CID, BlockSource, BlockStore, PackedBlockStore, _unixfs
from ..errors import InvalidInputError, ProvisionError
from ..records import Cloud, EnvironmentRecord, StructureRecord
from ._environments import Pin, parse_requirements, read_requirements, resolve_environment, reuse_environment
from ._function import DEFAULT_IGNORE

__all__ = [
    "CLOUDS",
    "IAC_LOCK",
    "IMAGE_KEYS",
    "LOCK_FILES",
    "PINS_FILE",
    "PLUGIN_DISTRIBUTIONS",
    "PROGRAM_DIRS",
    "PROGRAM_FILES",
    "ChartPin",
    "ImagePin",
    "LockPins",
    "ProgramEnvironment",
    "StructureCoverage",
    "build_structure",
    "check_recorded_pins",
    "cli_pin_entry",
    "recorded_cli_version",
    "describe_structure",
    "home_environments",
    "local_structure",
    "lock_pins",
    "plugin_pins",
    "program_environment",
    "program_pins",
    "sanitize_stack_config",
    "store_structure",
]

CLOUDS: Final = ("local", "aws", "gcp", "azure", "existing")
PROGRAM_FILES: Final = ("Pulumi.yaml", "__main__.py")
LOCK_FILES: Final = ("requirements.txt", "requirements.lock", "uv.lock", "poetry.lock", "Pipfile.lock")
"""Dependency locks included when present: the program is only reproducible with its versions."""
IAC_LOCK: Final = "requirements.lock"
"""The repository's own lock of the program's dependencies (``make lock-iac`` refreshes it)."""
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
CLI_PIN_FILE: Final = "pulumi-cli.version"
"""The committed Pulumi CLI version of the program; recorded in ``cats-pins.json`` as ``cli``."""
_SEMVER = re.compile(r"\d+\.\d+\.\d+")
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


_NAME_SEP = re.compile(r"[-_.]+")


def _normalize(name: str) -> str:
    return _NAME_SEP.sub("-", name).lower()


def lock_pins(path: Path) -> dict[str, str]:
    """The ``name -> version`` pins of a dependency lock (names normalized as PEP 503 does).

    Reads pip-style requirement files (``requirements.*``, via the Environment parser), the TOML
    locks of uv and Poetry (``[[package]]`` tables) and ``Pipfile.lock`` (its ``default`` section).

    Raises:
        InvalidInputError: the lock cannot be parsed.
    """
    text = path.read_text(encoding="utf-8")
    if path.name.startswith("requirements"):
        return {pin.name: pin.version for pin in parse_requirements(text, path.name)}
    try:
        if path.suffix == ".lock" and path.name != "Pipfile.lock":
            packages = tomllib.loads(text).get("package") or []
            return {_normalize(str(p["name"])): str(p["version"]) for p in packages if "version" in p}
        default = json.loads(text).get("default") or {}
        return {
            _normalize(name): str(spec["version"]).removeprefix("==")
            for name, spec in default.items()
            if isinstance(spec, dict) and "version" in spec
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInputError(
            f"expected a dependency lock in {path.name}, found unparsable text ({exc})"
        ) from exc


@dataclass(frozen=True)
class LockPins:
    """A dependency lock the Structure hashes.

    Attributes:
        path: Its path inside the program directory.
        cid: The UnixFS CID of the file (as it appears in the program directory).
        pins: The version it pins for each Pulumi SDK of :data:`PLUGIN_DISTRIBUTIONS`.
    """

    path: str
    cid: CID
    pins: Mapping[str, str]


def _checked_lock(path: Path, installed: Mapping[str, str | None]) -> LockPins:
    """Refuse a lock whose Pulumi SDK pins differ from the SDKs installed here.

    The deployment runs with the installed SDKs (and the provider plugins of their versions), so a
    Structure hashing a lock that names other versions would claim versions that are not used.
    An SDK not installed here cannot be used by any deployment from here: the lock's pin stands.
    An SDK the lock leaves out claims nothing: ``cats-pins.json`` records the installed version.
    """
    locked = lock_pins(path)
    for name, version in installed.items():
        if version is not None and name in locked and locked[name] != version:
            raise InvalidInputError(
                f"expected {path.name} to pin {name}=={version} (the installed SDK the deployment "
                f"runs with), found {name}=={locked[name]}; refresh the lock (`make lock-iac`) or "
                "install its versions"
            )
    pins = {name: locked[name] for name in installed if name in locked}
    return LockPins(path=path.name, cid=_unixfs.add_bytes(path.read_bytes(), None), pins=pins)


def _local_imports(program_dir: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Modules and packages beside ``__main__.py`` that the program imports, transitively.

    ``components/`` and ``policies/`` are hashed whole; any other top-level module of the program
    directory the code imports (a ``helpers.py``, a package of its own) runs at deploy time too, so
    it is hashed as well. Installed packages are pinned by the lock, not hashed.
    """
    queue = [program_dir / "__main__.py"]
    for folder in PROGRAM_DIRS:
        queue += sorted((program_dir / folder).rglob("*.py")) if (program_dir / folder).is_dir() else []
    modules: set[str] = set()
    packages: set[str] = set()
    seen: set[Path] = set()
    while queue:
        path = queue.pop()
        if path in seen or (tree := _parse(path)) is None:
            continue
        seen.add(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names} - set(PROGRAM_DIRS):
                if (program_dir / f"{top}.py").is_file() and f"{top}.py" not in modules:
                    modules.add(f"{top}.py")
                    queue.append(program_dir / f"{top}.py")
                elif (program_dir / top / "__init__.py").is_file() and top not in packages:
                    packages.add(top)
                    queue += sorted((program_dir / top).rglob("*.py"))
    return tuple(sorted(modules)), tuple(sorted(packages))


def program_pins(program_dir: Path) -> list[Pin]:
    """The pins of the program's own dependencies: its hashed :data:`IAC_LOCK`.

    Raises:
        InvalidInputError: the lock is missing, not a pinned requirements file, or has no
            ``--hash`` pins (the Environment is built from exactly the wheels the hashes name).
    """
    path = program_dir / IAC_LOCK
    if not path.is_file():
        raise InvalidInputError(
            f"expected {IAC_LOCK} in the Pulumi program {program_dir} (the hashed lock of its own "
            "dependencies, `make lock-iac`), found none"
        )
    pins = read_requirements(path)
    if not pins or not pins[0].hashes:  # parse_requirements: hashes on every pin or on none
        raise InvalidInputError(
            f"expected --hash=sha256: pins on every requirement of {path}, found "
            + ("no requirement" if not pins else f"none ({pins[0].where})")
            + " (`make lock-iac` writes them)"
        )
    return pins


@dataclass(frozen=True)
class ProgramEnvironment:
    """The Environment of a Pulumi program's own dependencies.

    Attributes:
        record: The Environment record.
        cid: Its CID (the Structure's ``environment`` link).
        reused: Whether it came from the memo (no index asked, nothing downloaded).
    """

    record: EnvironmentRecord
    cid: CID
    reused: bool


# Compute-only resolutions (no store) of this process, by the memo key of the pins: a Structure
# of the same lock is asked for repeatedly (every stack of a program), and hash-pinned wheels
# resolve to the same Environment each time.
_COMPUTED: dict[tuple[str, ...], tuple[EnvironmentRecord, CID]] = {}


def home_environments(home: Path) -> tuple[Path, BlockSource | None]:
    """The memo of resolved pins of a CATs home and the store its Environments are in.

    The store is None when the home has no memo yet (nothing to reuse); opening it then would
    create the home, and a command that stores nothing must not write anywhere.
    """
    memo = home / "envs" / ".resolved"
    blocks = home / "blocks"
    # The home's own store (packed blocks and large-block files, as Repo opens it): a memo exists
    # only in a home that has one.
    return memo, (PackedBlockStore(blocks) if memo.is_dir() and (blocks / "SHARDING").is_file() else None)


def program_environment(
    program_dir: Path,
    store: BlockStore | None,
    *,
    memo: Path | None = None,
    source: BlockSource | None = None,
) -> ProgramEnvironment:
    """Resolve the program's Environment from its hashed lock (see :func:`program_pins`).

    Args:
        program_dir: The Pulumi program.
        store: Where the wheels and the record go (None: only compute the CID).
        memo: The home's memo of resolved pins (``<home>/envs/.resolved``): when it names an
            Environment of exactly these pins whose blocks are all in ``source`` (or ``store``),
            that one is used and no index is asked. A new resolution is remembered there only
            when ``store`` is the home's own store (``source`` None): a memo must never name
            blocks that are not in the home.
        source: The home's store, when ``store`` is another (a staging store merged into it
            later, or None): memoized Environments are read from it and their blocks left there.

    Raises:
        InvalidInputError: as :func:`program_pins`, or a pin with no wheel here.
        IntegrityError: a wheel does not match its hash.
    """
    pins = program_pins(program_dir)
    held = source if source is not None else store
    if memo is not None and held is not None and (known := reuse_environment(pins, held, memo)) is not None:
        return ProgramEnvironment(known[0], known[1], reused=True)
    key = tuple(sorted(f"{p.name}=={p.version} {','.join(p.hashes)}" for p in pins))
    if store is None and key in _COMPUTED:
        record, cid = _COMPUTED[key]
        return ProgramEnvironment(record, cid, reused=False)
    remember = memo if store is not None and source is None else None
    record, cid = resolve_environment(pins, store, memo=remember)
    _COMPUTED[key] = (record, cid)
    return ProgramEnvironment(record, cid, reused=False)


@dataclass(frozen=True)
class _Assembled:
    record: StructureRecord
    files: tuple[str, ...]
    plugins: Mapping[str, str | None]
    locks: tuple[LockPins, ...]
    config: Mapping[str, Any]
    environment: ProgramEnvironment | None


def _assemble(
    program_dir: Path,
    stack: str,
    store: BlockStore | None,
    memo: Path | None = None,
    source: BlockSource | None = None,
) -> _Assembled:
    if not stack or "/" in stack or stack.startswith("."):
        raise InvalidInputError(f"expected a stack name, found {stack!r}")
    for name in PROGRAM_FILES:
        if not (program_dir / name).is_file():
            raise InvalidInputError(f"expected {name} in the Pulumi program {program_dir}, found none")
    stack_file, stack_rel = _find_stack_file(program_dir, stack)
    sanitized = sanitize_stack_config(stack_file.read_text(encoding="utf-8"))
    cloud = _cloud_of(sanitized, stack)
    plugins = plugin_pins()
    locks = tuple(
        _checked_lock(program_dir / name, plugins) for name in LOCK_FILES if (program_dir / name).is_file()
    )
    # The lock is checked (and its Environment resolved) before any block of the program is stored.
    environment = program_environment(program_dir, store, memo=memo, source=source)
    with tempfile.TemporaryDirectory(prefix="cats-structure-") as tmp:
        root = Path(tmp) / "program"
        root.mkdir()
        for name in PROGRAM_FILES + LOCK_FILES:
            if (program_dir / name).is_file():
                shutil.copyfile(program_dir / name, root / name)
        modules, packages = _local_imports(program_dir)
        for name in modules:
            shutil.copyfile(program_dir / name, root / name)
        for folder in PROGRAM_DIRS + packages:
            if (program_dir / folder).is_dir():
                shutil.copytree(
                    program_dir / folder, root / folder, ignore=shutil.ignore_patterns(*DEFAULT_IGNORE)
                )
        # The plugin versions the deployment runs with (the SDK and CLI share the `pulumi` version).
        pins = {"plugins": plugins, **cli_pin_entry(program_dir)}
        (root / PINS_FILE).write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (root / stack_rel).parent.mkdir(parents=True, exist_ok=True)
        (root / stack_rel).write_text(sanitized, encoding="utf-8")
        program = _unixfs.add_path(root, store, exclude=DEFAULT_IGNORE, hidden=True).cid
        files = tuple(sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()))
    config = (yaml.safe_load(sanitized) or {}).get("config") or {}
    return _Assembled(
        record=StructureRecord(
            cloud=cloud, stack=stack, program=program, environment=environment.cid, outputs=[]
        ),
        files=files,
        plugins=plugins,
        locks=locks,
        config=config if isinstance(config, dict) else {},
        environment=environment,
    )


def build_structure(
    program_dir: Path,
    stack: str,
    store: BlockStore | None,
    *,
    memo: Path | None = None,
    source: BlockSource | None = None,
) -> StructureRecord:
    """Hash the Pulumi program of ``stack`` as one UnixFS directory.

    The directory holds ``Pulumi.yaml``, ``__main__.py``, ``components/``, ``policies/`` (the pack
    that gates the deployment), ``cats-pins.json`` (the Pulumi SDK and provider plugin versions), the
    one stack config
    ``Pulumi.<stack>.yaml`` (sanitized: see :func:`sanitize_stack_config`) at its usual place and
    the dependency lock if present; nothing else of ``program_dir`` (other organizations' stacks,
    state, caches) can change the CID. A lock must pin the installed Pulumi SDKs at their installed
    versions, so the record never claims versions other than the ones a deployment from here uses.

    The record links the Environment of the program's own dependencies, resolved from its hashed
    ``requirements.lock`` (:func:`program_environment`; ``memo`` and ``source`` as there), so the
    CID covers the exact wheels of the Pulumi and provider SDKs.

    Raises:
        InvalidInputError: a required file is missing, the stack names no known cloud, a lock
            pins a Pulumi SDK at another version than the installed one, or ``requirements.lock``
            is missing or unhashed.
    """
    return _assemble(program_dir, stack, store, memo, source).record


def check_recorded_pins(program_dir: Path) -> None:
    """Refuse to deploy a materialized program with other Pulumi SDKs than its Structure recorded.

    The Structure's ``cats-pins.json`` names the SDK (hence provider plugin) versions the program
    was hashed with; deploying it with others would provision something the record does not name.
    A program hashed before the pins were recorded (no ``cats-pins.json``) is not checked.

    Raises:
        ProvisionError: an SDK is installed at another version, or missing (the message says what
            to install).
    """
    path = program_dir / PINS_FILE
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["plugins"]
        recorded = {str(k): (None if v is None else str(v)) for k, v in dict(recorded).items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            f"expected {{'plugins': {{...}}}} in the Structure's {PINS_FILE}, found {exc}"
        ) from exc
    installed = plugin_pins()
    wrong = [
        f"{name}=={version} (installed: {installed.get(name) or 'none'})"
        for name, version in sorted(recorded.items())
        if version is not None and installed.get(name) != version
    ]
    if wrong:
        raise ProvisionError(
            f"expected the Pulumi SDKs the Structure recorded, found others: {', '.join(wrong)}; "
            f"install them (pip install --require-hashes -r {IAC_LOCK} of the program) and retry"
        )


def cli_pin_entry(program_dir: Path) -> dict[str, str]:
    """``{"cli": VERSION}`` from the program's ``pulumi-cli.version``; empty when it has none.

    Raises:
        InvalidInputError: The file holds something else than one ``X.Y.Z`` version.
    """
    path = program_dir / CLI_PIN_FILE
    if not path.is_file():
        return {}
    version = path.read_text(encoding="utf-8").strip()
    if not _SEMVER.fullmatch(version):
        raise InvalidInputError(f"expected one X.Y.Z Pulumi CLI version in {CLI_PIN_FILE}, found {version!r}")
    return {"cli": version}


def recorded_cli_version(program_dir: Path) -> str | None:
    """The Pulumi CLI version a materialized program's ``cats-pins.json`` recorded, if any."""
    path = program_dir / PINS_FILE
    if not path.is_file():
        return None
    try:
        version = json.loads(path.read_text(encoding="utf-8")).get("cli")
    except (ValueError, AttributeError) as exc:
        raise InvalidInputError(
            f"expected a JSON object in the Structure's {PINS_FILE}, found {exc}"
        ) from exc
    if version is not None and not (isinstance(version, str) and _SEMVER.fullmatch(version)):
        raise InvalidInputError(f"expected an X.Y.Z Pulumi CLI version in {PINS_FILE}, found {version!r}")
    return version


# --- what a Structure covers, for `cats structure` ---------------------------------------------

IMAGE_KEYS: Final = (
    ("cats:nodeImage", "components/catnode.py", "DEFAULT_NODE_IMAGE"),
    ("cats:rayImage", "components/kuberay.py", "DEFAULT_RAY_IMAGE"),
    ("cats:kuboImage", "components/kubo.py", "DEFAULT_KUBO_IMAGE"),
)
"""Each image the program deploys: its stack key, and where its default is defined."""
_CLOUD_MODULES: Final = {"eks.py": "aws", "gke.py": "gcp", "aks.py": "azure", "existing.py": "existing"}
"""Modules of ``components/plant/`` that only one cloud's stacks run."""


@dataclass(frozen=True)
class ChartPin:
    """A Helm release of the program.

    Attributes:
        name: The chart name.
        version: The chart version (None when the program leaves it unpinned).
        repository: The chart repository URL (None when not given).
        source: The program file declaring the release.
    """

    name: str
    version: str | None
    repository: str | None
    source: str


@dataclass(frozen=True)
class ImagePin:
    """A container image the program deploys.

    Attributes:
        key: The stack config key that sets it.
        image: The image reference the stack runs.
        digest: Its ``sha256:...`` digest, None when the reference has none.
        source: ``stack`` (set in the stack config) or ``default`` (the program's default).
    """

    key: str
    image: str
    digest: str | None
    source: str


@dataclass(frozen=True)
class StructureCoverage:
    """A Structure record and what its CID covers.

    Attributes:
        record: The Structure record.
        cid: The record's CID (what an Order names).
        files: The files of the hashed program directory (paths inside it, sorted).
        plugins: The installed Pulumi SDK versions (each pins its provider plugin), ``cats-pins.json``.
        locks: The dependency locks hashed, with their Pulumi SDK pins.
        kubernetes_version: ``cats:kubernetesVersion`` of the stack (None: the cloud's default).
        charts: The Helm releases the program declares for this cloud.
        images: The images the stack runs.
        environment: The Environment of the program's own dependencies the record links.
    """

    record: StructureRecord
    cid: CID
    files: tuple[str, ...]
    plugins: Mapping[str, str | None]
    locks: tuple[LockPins, ...] = ()
    kubernetes_version: str | None = None
    charts: tuple[ChartPin, ...] = ()
    images: tuple[ImagePin, ...] = ()
    environment: ProgramEnvironment | None = None


class _Unknown(Exception):
    """An expression that is not a constant of the module."""


def _constant(node: ast.expr, names: Mapping[str, Any]) -> Any:
    """Evaluate a constant expression of module constants (no code runs: the tree is walked)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        left, right = _constant(node.left, names), _constant(node.right, names)
        if isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str):
            return left + right
        if isinstance(node.op, ast.Mult) and isinstance(left, str) and isinstance(right, int):
            return left * right
    if isinstance(node, ast.Subscript):
        container, key = _constant(node.value, names), _constant(node.slice, names)
        if isinstance(container, dict) and key in container:
            return container[key]
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {
            _constant(cast(ast.expr, k), names): _constant(v, names)
            for k, v in zip(node.keys, node.values, strict=True)
        }
    raise _Unknown


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for statement in tree.body:
        targets: list[ast.expr] = []
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        for target in targets:
            if isinstance(target, ast.Name):
                with contextlib.suppress(_Unknown):  # not a constant: not a chart/image setting
                    names[target.id] = _constant(value, names)
    return names


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None  # a broken module is still hashed; it just declares nothing we can read


def _charts(program_dir: Path, cloud: str) -> tuple[ChartPin, ...]:
    charts: list[ChartPin] = []
    for path in sorted((program_dir / "components").rglob("*.py")):
        rel = path.relative_to(program_dir).as_posix()
        if path.parent.name == "plant" and _CLOUD_MODULES.get(path.name, cloud) != cloud:
            continue
        if (tree := _parse(path)) is None:
            continue
        names = _module_constants(tree)
        for node in ast.walk(tree):
            func = node.func if isinstance(node, ast.Call) else None
            if not isinstance(node, ast.Call) or not isinstance(func, ast.Attribute | ast.Name):
                continue
            if (func.attr if isinstance(func, ast.Attribute) else func.id) not in ("Release", "Chart"):
                continue
            values: dict[str, Any] = {}
            for keyword in node.keywords:
                if keyword.arg in ("chart", "version", "repository_opts"):
                    try:
                        values[keyword.arg] = _constant(keyword.value, names)
                    except _Unknown:
                        values[keyword.arg] = None
            if not isinstance(values.get("chart"), str):
                continue
            repo = values.get("repository_opts")
            charts.append(
                ChartPin(
                    name=values["chart"],
                    version=values["version"] if isinstance(values.get("version"), str) else None,
                    repository=str(repo["repo"]) if isinstance(repo, dict) and "repo" in repo else None,
                    source=rel,
                )
            )
    return tuple(charts)


def _config_value(config: Mapping[str, Any], key: str) -> Any:
    value = config.get(key)
    if isinstance(value, dict) and "value" in value:  # structured config form
        value = value["value"]
    return value


def _images(program_dir: Path, config: Mapping[str, Any]) -> tuple[ImagePin, ...]:
    images: list[ImagePin] = []
    for key, module, constant in IMAGE_KEYS:
        image, source = _config_value(config, key), "stack"
        if image is None:
            tree = _parse(program_dir / module) if (program_dir / module).is_file() else None
            image, source = (_module_constants(tree).get(constant) if tree else None), "default"
        if not isinstance(image, str):
            continue
        _, at, digest = image.partition("@")
        images.append(ImagePin(key=key, image=image, digest=digest if at else None, source=source))
    return tuple(images)


def describe_structure(
    program_dir: Path,
    stack: str,
    store: BlockStore | None,
    *,
    memo: Path | None = None,
    source: BlockSource | None = None,
) -> StructureCoverage:
    """Build the Structure of ``stack`` (as :func:`build_structure`) and say what it covers.

    Nothing is provisioned and nothing is imported from the program: charts and default images
    are read from the syntax tree of ``components/``. ``store`` receives the program's blocks
    when given (the record's block is not stored: :func:`store_structure` does that).

    Raises:
        InvalidInputError: as :func:`build_structure`.
    """
    built = _assemble(program_dir, stack, store, memo, source)
    version = _config_value(built.config, "cats:kubernetesVersion")
    return StructureCoverage(
        record=built.record,
        cid=built.record.to_block().cid,
        files=built.files,
        plugins=built.plugins,
        locks=built.locks,
        kubernetes_version=None if version is None else str(version),
        charts=_charts(program_dir, built.record.cloud),
        images=_images(program_dir, built.config),
        environment=built.environment,
    )


def store_structure(record: StructureRecord, store: BlockStore) -> CID:
    """Store a Structure record's block and return its CID."""
    block = record.to_block()
    store.put(block)
    return block.cid
