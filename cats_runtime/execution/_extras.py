"""Optional extras of the ``cats-runtime`` package, and the one-line error when one is missing.

A runtime-only install (``make install-core``, ``pip install cats-runtime``) has no Pulumi SDK; the
commands that need it say which extra to install instead of failing deep inside an import.
"""

from __future__ import annotations

import importlib.util
from typing import Final

from ..errors import MissingExtraError

__all__ = ["EXTRAS", "require_extra"]

EXTRAS: Final[dict[str, str]] = {
    "iac": "the IaC extra: pip install 'cats-runtime[iac]' (or make install)",
    "dev": "the dev extra: pip install 'cats-runtime[dev]' (or make install)",
}
"""What to install for each extra, as the error message says it."""


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken install
        return False


def require_extra(extra: str, *modules: str, needed_for: str) -> None:
    """Check that every top-level ``modules`` of ``extra`` can be imported, without importing it.

    Raises:
        MissingExtraError: One of them is not installed; the message names the extra to install.
    """
    missing = [m for m in modules if not _importable(m)]
    if missing:
        raise MissingExtraError(
            f"{needed_for} needs {EXTRAS[extra]}; found no module {missing[0]!r} in this environment"
        )
