"""Generate docs/cli.md from the CLI's own --help texts (``--check`` fails when it is stale)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cats_runtime.cli import cli

OUT = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def _walk(cmd: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, cmd)]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            found.extend(_walk(cmd.commands[name], [*path, name]))
    return found


def render() -> str:
    """The whole CLI reference as Markdown."""
    parts = ["# `cats` command reference", "", "Generated from `--help` by `make docs`; do not edit.", ""]
    for path, cmd in _walk(cli, ["cats"]):
        ctx = click.Context(cmd, info_name=" ".join(path))
        parts += [f"## `{' '.join(path)}`", "", "```text", cmd.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(parts)


def main() -> int:
    """Write or check docs/cli.md."""
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print("docs/cli.md is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
