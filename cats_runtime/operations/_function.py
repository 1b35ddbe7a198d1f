"""Function records built from code on disk: the code directory hashed as UnixFS, never a pickle."""

from __future__ import annotations

import ast
import difflib
import os
import re
import sys
from pathlib import Path
from typing import Final, Literal

from ..cas import CID, BlockStore, _unixfs
from ..errors import InvalidInputError
from ..execution import ENTRYPOINT_RE
from ..records import FunctionRecord, ParamDecl
from ._environments import Pin, project_pins, read_requirements, resolve_environment
from ._params import load_declaration

__all__ = [
    "DEFAULT_IGNORE",
    "Mode",
    "build_function",
    "check_entrypoint",
    "inspect_function",
    "parse_function_spec",
]

Mode = Literal["batch", "map"]

DEFAULT_IGNORE: Final[tuple[str, ...]] = (
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "env",
    ".env",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".ipynb_checkpoints",
    "*.egg-info",
    ".DS_Store",
)
"""Names left out when hashing a code directory (fnmatch, matched against each entry's name).

Caches, virtualenvs and VCS metadata change without the code changing; ``.env`` files usually
hold secrets. The list is recorded in the Function's ``ignore`` field so anyone can re-hash.
"""

_IMAGE_RE: Final = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse_function_spec(spec: str) -> tuple[Path, str]:
    """Split ``DIR:module:callable`` into the code directory and the entrypoint.

    Raises:
        InvalidInputError: the spec is malformed, the directory or the module file is missing.
    """
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise InvalidInputError(f"expected --function DIR:module:callable, found {spec!r}")
    directory, module, attr = parts
    entrypoint = f"{module}:{attr}"
    if not ENTRYPOINT_RE.match(entrypoint):
        raise InvalidInputError(
            f"expected --function DIR:module:callable with a dotted module and a Python name, found {spec!r}"
        )
    code_dir = Path(directory).expanduser()
    if not code_dir.is_dir():
        raise InvalidInputError(f"expected a code directory in --function, found no directory at {code_dir}")
    rel = Path(*module.split("."))
    if not (code_dir / rel.with_suffix(".py")).is_file() and not (code_dir / rel / "__init__.py").is_file():
        raise InvalidInputError(
            f"expected module {module!r} as {rel.with_suffix('.py')} or {rel / '__init__.py'} in {code_dir}, "
            "found neither"
        )
    return code_dir, entrypoint


def _module_file(code_dir: Path, module: str) -> Path:
    rel = Path(*module.split("."))
    file = code_dir / rel.with_suffix(".py")
    return file if file.is_file() else code_dir / rel / "__init__.py"


def _bindings(body: list[ast.stmt]) -> tuple[dict[str, ast.AST], bool]:
    """Names a module body binds at top level (conditional ones included).

    Also says whether some binding is invisible to a static reader (``import *``, a module
    ``__getattr__``).
    """
    names: dict[str, ast.AST] = {}
    opaque = False
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[stmt.name] = stmt
            opaque |= stmt.name == "__getattr__"
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            for alias in stmt.names:
                if alias.name == "*":
                    opaque = True
                else:
                    names[alias.asname or alias.name.split(".")[0]] = stmt
        elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            value = stmt.value
            for target in targets:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name):
                        names[node.id] = value if isinstance(value, ast.Lambda) else stmt
        else:
            # if/try/with/for/while/match at top level still bind module names when they run.
            blocks = [getattr(stmt, part, []) for part in ("body", "orelse", "finalbody")]
            blocks += [h.body for h in getattr(stmt, "handlers", [])]
            blocks += [c.body for c in getattr(stmt, "cases", [])]
            for block in blocks:
                sub, sub_opaque = _bindings(block)
                names.update(sub)
                opaque |= sub_opaque
    return names, opaque


def _takes_one_argument(args: ast.arguments) -> bool:
    positional = [*args.posonlyargs, *args.args]
    required_kwonly = [a for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if required_kwonly:
        return False
    required = len(positional) - len(args.defaults)
    return (len(positional) >= 1 or args.vararg is not None) and required <= 1


def check_entrypoint(code_dir: Path, entrypoint: str) -> None:
    """Check, by reading the source only, that the entrypoint exists and can be called as ``fn(ctx)``.

    The module is parsed with :mod:`ast`, never imported: user code does not run in this
    process (it runs sandboxed, on Ray). What cannot be decided statically (a callable made
    by a decorator or imported from elsewhere, ``from x import *``) is given the benefit of
    the doubt; the run itself is the final check.

    Raises:
        InvalidInputError: the module does not parse, does not define the callable, or defines
            it with a signature that cannot take one context argument.
    """
    module, attr = entrypoint.split(":")
    path = _module_file(code_dir, module)
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise InvalidInputError(
            f"expected module {module!r} to be valid Python, found a syntax error at {path}:{exc.lineno}: "
            f"{exc.msg}"
        ) from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"expected a readable module {module!r} at {path}, found: {exc}") from None
    names, opaque = _bindings(tree.body)
    node = names.get(attr)
    if node is None:
        if opaque:
            return
        defined = sorted(
            n for n, d in names.items() if isinstance(d, ast.FunctionDef) and not n.startswith("_")
        )
        close = difflib.get_close_matches(attr, defined, n=1)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else (f" (it defines: {', '.join(defined)})" if defined else "")
        )
        raise InvalidInputError(
            f"expected a callable {attr!r} in module {module!r} ({path}), found none{hint}"
        )
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        if node.decorator_list:
            return  # a decorator may change the signature
        if isinstance(node, ast.AsyncFunctionDef):
            raise InvalidInputError(
                f"expected {entrypoint} to be a plain function fn(ctx), "
                f"found an async def ({path}:{node.lineno})"
            )
        args = node.args
    elif isinstance(node, ast.Lambda):
        args = node.args
    else:
        return
    if not _takes_one_argument(args):
        raise InvalidInputError(
            f"expected {entrypoint} to accept one context argument, fn(ctx), found a different signature "
            f"({path}:{getattr(node, 'lineno', '?')})"
        )


def inspect_function(spec: str) -> dict[str, ParamDecl] | None:
    """Everything checkable about ``DIR:module:callable`` without hashing or running it.

    The pre-flight of ``cats run``: the directory, module and callable exist and the callable
    takes a context (read statically, see :func:`check_entrypoint`), and ``cats.toml`` is valid.

    Returns:
        The declared params, or None when the code declares none.

    Raises:
        InvalidInputError: any of these checks failed.
    """
    code_dir, entrypoint = parse_function_spec(spec)
    check_entrypoint(code_dir, entrypoint)
    return load_declaration(code_dir)


def build_function(
    spec: str,
    store: BlockStore | None,
    *,
    mode: Mode = "batch",
    requirements: Path | None = None,
    image: str | None = None,
    name: str | None = None,
    ignore: tuple[str, ...] = DEFAULT_IGNORE,
    network: bool = False,
    resolved: Path | None = None,
) -> tuple[FunctionRecord, CID]:
    """Hash a code directory and describe how to run it; the record (and code) go into ``store``.

    Args:
        spec: ``DIR:module:callable``.
        store: Where the code blocks and the record block go (None: only compute the CID).
        mode: ``batch`` (one call with all inputs) or ``map`` (one call per datum).
        requirements: A pinned requirements file (every requirement ``==``); its UnixFS CID is
            recorded and its wheels become the Function's Environment. Without it, a
            ``pyproject.toml`` plus ``uv.lock``/``pylock.toml`` in the code directory is used.
        image: A container image digest ``sha256:<64 hex>``.
        name: A human name; defaults to the callable's name.
        ignore: Exclude patterns used when hashing (recorded in the Function).
        network: The code needs the network (recorded; without it the sandbox has none).
        resolved: Where resolutions of pinned requirements are remembered (see
            :func:`resolve_environment`): a rerun with the same pins asks no index.

    Returns:
        The record and its CID.

    Raises:
        InvalidInputError: requirements that are malformed, unpinned, or not available as wheels
            (checked before anything is stored), a bad option, a missing module or callable
            (checked statically, see :func:`check_entrypoint`), or a malformed ``cats.toml``
            params declaration.
    """
    if mode not in ("batch", "map"):
        raise InvalidInputError(f"expected --mode batch or map, found {mode!r}")
    if image is not None and not _IMAGE_RE.match(image):
        raise InvalidInputError(f"expected --image sha256:<64 lowercase hex>, found {image!r}")
    declared = inspect_function(spec)
    code_dir, entrypoint = parse_function_spec(spec)
    # Requirements are parsed before anything is hashed or stored: a bad file stops here.
    pins: list[Pin] | None = None
    if requirements is not None:
        if not requirements.is_file():
            raise InvalidInputError(f"expected a requirements file, found nothing at {requirements}")
        pins = read_requirements(requirements)
    elif (project := project_pins(code_dir)) is not None:
        pins = project[0]
    environment = resolve_environment(pins, store, memo=resolved)[1] if pins is not None else None
    code = _unixfs.add_path(os.path.realpath(code_dir), store, exclude=ignore, hidden=True).cid
    req: CID | None = None
    if requirements is not None:
        req = _unixfs.add_path(os.path.realpath(requirements), store).cid
    record = FunctionRecord(
        name=name or entrypoint.split(":")[1],
        code=code,
        entrypoint=entrypoint,
        mode=mode,
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        requirements=req,
        image=image,
        ignore=list(ignore),
        environment=environment,
        params=declared,
        network=network,
    )
    block = record.to_block()
    if store is not None:
        store.put(block)
    return record, block.cid
