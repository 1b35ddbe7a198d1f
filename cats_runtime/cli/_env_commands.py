"""Commands of environments: lock (loose requirements -> a pinned, hashed requirements file)."""

from __future__ import annotations

from pathlib import Path

import click

from ..operations import lock_requirements
from ._app import command_set, emit

__all__ = ["cli"]

cli = command_set()  # this module's commands; cli/_main.py adds them to `cats`


@cli.command("lock")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the pinned requirements file is written.",
)
@click.option(
    "--index-url",
    "index_urls",
    multiple=True,
    metavar="URL",
    help="Package index to resolve from (repeatable; default: pip's configured indexes).",
)
@click.option(
    "--find-links",
    "find_links",
    multiple=True,
    metavar="DIR|URL",
    help="Extra place to find wheels (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def lock_command(
    source: Path, output: Path, index_urls: tuple[str, ...], find_links: tuple[str, ...], as_json: bool
) -> None:
    """Pin loose requirements (or a pyproject.toml) for this interpreter, with hashes.

    Runs `uv pip compile --generate-hashes`; the output is what `cats run --requirements` takes.
    """
    options: list[str] | None = None
    if index_urls or find_links:
        options = [f"--index-url={index_urls[0]}"] if index_urls else []
        options += [f"--extra-index-url={u}" for u in index_urls[1:]]
        options += [f"--find-links={f}" for f in find_links]
    pins = lock_requirements(source, output, index_options=options)
    data = {"output": str(output), "pins": [f"{p.name}=={p.version}" for p in pins]}
    emit(as_json, data, f"locked {len(pins)} distribution(s) in {output}")
