"""Tiny hashed locks for test Pulumi programs: the Structure resolves its Environment from
``requirements.lock``, and the shipped 32-pin lock downloads 67 MB of wheels; these name one
small wheel (six, 11 kB) from the index the other Environment tests use."""

from __future__ import annotations

from pathlib import Path

SIX_17 = "six==1.17.0 --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274\n"
SIX_16 = "six==1.16.0 --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n"


def write_small_lock(program: Path, text: str = SIX_17) -> Path:
    """Give ``program`` a hashed ``requirements.lock`` of one small wheel; returns its path."""
    lock = program / "requirements.lock"
    lock.write_text("# a test program's own dependencies (tests/program_locks.py)\n" + text, encoding="utf-8")
    return lock


# What a copy of the repository as a test's Pulumi program leaves out: environments, history, the
# tests, and caches another process (mypy, ruff, pytest) may be rewriting during the copy.
PROGRAM_COPY_IGNORE = (
    ".venv", ".git", "tests", "node_modules", "*.car", ".*_cache", "__pycache__", ".hypothesis"
)  # fmt: skip
