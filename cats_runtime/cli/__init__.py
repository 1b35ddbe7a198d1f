"""The ``cats`` command-line interface: parse, call the library, format."""

from __future__ import annotations

from ._main import cli, main

__all__ = ["cli", "main"]
