"""Function records built from code on disk: the code directory hashed as UnixFS, never a pickle."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Final, Literal

from ..cas import CID, BlockStore, _unixfs
from ..errors import InvalidInputError
from ..execution import ENTRYPOINT_RE
from ..records import FunctionRecord

__all__ = ["DEFAULT_IGNORE", "Mode", "build_function", "parse_function_spec"]

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
) -> tuple[FunctionRecord, CID]:
    """Hash a code directory and describe how to run it; the record (and code) go into ``store``.

    Args:
        spec: ``DIR:module:callable``.
        store: Where the code blocks and the record block go (None: only compute the CID).
        mode: ``batch`` (one call with all inputs) or ``map`` (one call per datum).
        requirements: A pinned requirements file; its UnixFS CID is recorded.
        image: A container image digest ``sha256:<64 hex>``.
        name: A human name; defaults to the callable's name.
        ignore: Exclude patterns used when hashing (recorded in the Function).
        network: The code needs the network (recorded; without it the sandbox has none).

    Returns:
        The record and its CID.
    """
    if mode not in ("batch", "map"):
        raise InvalidInputError(f"expected --mode batch or map, found {mode!r}")
    if image is not None and not _IMAGE_RE.match(image):
        raise InvalidInputError(f"expected --image sha256:<64 lowercase hex>, found {image!r}")
    code_dir, entrypoint = parse_function_spec(spec)
    code = _unixfs.add_path(code_dir, store, exclude=ignore).cid
    req: CID | None = None
    if requirements is not None:
        if not requirements.is_file():
            raise InvalidInputError(f"expected a requirements file, found nothing at {requirements}")
        req = _unixfs.add_path(requirements, store).cid
    record = FunctionRecord(
        name=name or entrypoint.split(":")[1],
        code=code,
        entrypoint=entrypoint,
        mode=mode,
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        requirements=req,
        image=image,
        ignore=list(ignore),
        network=network,
    )
    block = record.to_block()
    if store is not None:
        store.put(block)
    return record, block.cid
