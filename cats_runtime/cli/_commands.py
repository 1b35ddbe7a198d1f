"""Imports every command module so that each registers itself on the ``cats`` group."""

from __future__ import annotations

from . import (
    _cas_commands,  # noqa: F401
    _iac_commands,  # noqa: F401
    _node_commands,  # noqa: F401
    _ray_commands,  # noqa: F401
    _run_commands,  # noqa: F401
)
