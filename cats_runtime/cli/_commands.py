"""Imports every command module so that each registers itself on the ``cats`` group."""

from __future__ import annotations

from . import _cas_commands  # noqa: F401
from . import _node_commands  # noqa: F401
from . import _run_commands  # noqa: F401
