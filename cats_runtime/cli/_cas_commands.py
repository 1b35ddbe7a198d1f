"""Commands of the content-addressed core: add, cat, get, show, car, repo, pin."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ..operations import cas_ops
from ._app import cid_arg, command_set, emit, progress, state

__all__ = ["cli"]

cli = command_set()  # this module's commands; cli/_main.py adds them to `cats`


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--cid-version",
    type=click.Choice(["0", "1"]),
    default="1",
    show_default=True,
    help="1 equals `ipfs add --cid-version=1` (raw leaves); 0 equals plain `ipfs add`.",
)
@click.option("--only-hash", "-n", is_flag=True, help="Compute the CID without storing anything.")
@click.option("--pin/--no-pin", default=True, show_default=True, help="Pin the root so gc keeps it.")
@click.option(
    "--exclude", multiple=True, metavar="PATTERN", help="Skip entries whose name matches (fnmatch)."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def add(
    path: Path, cid_version: str, only_hash: bool, pin: bool, exclude: tuple[str, ...], as_json: bool
) -> None:
    """Add a file or directory and print its CID (identical to Kubo's `ipfs add`)."""
    total = _tree_size(path)
    with progress(f"adding {path.name}", total, enabled=not as_json) as advance:
        result = cas_ops.add(
            state().home,
            path,
            cid_version=int(cid_version),
            only_hash=only_hash,
            pin=pin and not only_hash,
            exclude=exclude,
            progress=advance,
        )
    emit(
        as_json,
        {"cid": result.cid, "size": result.size, "stored": not only_hash, "pinned": result.pinned},
        str(result.cid),
    )


@cli.command()
@click.argument("cid", type=str)
def cat(cid: str) -> None:
    """Write a file's bytes to stdout, verifying every block."""
    out = sys.stdout.buffer
    for chunk in cas_ops.cat(state().home, cid_arg(cid)):
        out.write(chunk)
    out.flush()


@cli.command()
@click.argument("cid", type=str)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Where to write the file or directory (must not exist, or be an empty directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def get(cid: str, output: Path, as_json: bool) -> None:
    """Write a file or directory tree to OUTPUT, verifying every block."""
    root = cid_arg(cid)
    with progress(f"getting {root}", None, enabled=not as_json) as advance:
        cas_ops.get(state().home, root, output, progress=advance)
    emit(as_json, {"cid": root, "output": output}, f"wrote {output}")


@cli.command()
@click.argument("cid", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
def show(cid: str, as_json: bool) -> None:
    """Show a block: records as DAG-JSON, dag-pb/UnixFS nodes and raw blocks summarized."""
    info = cas_ops.show(state().home, cid_arg(cid))
    emit(as_json, info.to_json(), info.to_text)


@cli.group()
def car() -> None:
    """Export and import CAR (v1) files, compatible with `ipfs dag export/import`."""


@car.command("export")
@click.argument("cid", type=str)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The CAR file to write ('-' for stdout).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def car_export(cid: str, output: Path, as_json: bool) -> None:
    """Write the whole DAG under CID to a CAR file."""
    root = cid_arg(cid)
    count = cas_ops.car_export(state().home, root, output)
    if str(output) != "-":
        emit(
            as_json, {"root": root, "blocks": count, "output": output}, f"exported {count} blocks to {output}"
        )


@car.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pin/--no-pin", default=True, show_default=True, help="Pin the CAR's roots.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def car_import(path: Path, pin: bool, as_json: bool) -> None:
    """Import a CAR file; every block is verified, and nothing is stored unless all are valid."""
    roots = cas_ops.car_import(state().home, path, pin=pin)
    emit(as_json, {"roots": roots}, "\n".join(str(r) for r in roots) or "imported (no roots)")


@cli.group()
def repo() -> None:
    """Check and clean the local block store."""


@repo.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def repo_verify(as_json: bool) -> None:
    """Re-hash every block and list the corrupt ones (exit 4 if any)."""
    report = cas_ops.repo_verify(state().home)
    data: dict[str, Any] = {
        "blocks": report.checked,
        "corrupt": [{"cid": c.cid, "path": c.path, "reason": c.reason} for c in report.corrupt],
    }
    lines = [f"{c.cid}  {c.path}  {c.reason}" for c in report.corrupt]
    lines.append(f"checked {report.checked} blocks, {len(report.corrupt)} corrupt")
    emit(as_json, data, "\n".join(lines))
    if report.corrupt:
        sys.exit(4)


@repo.command("gc")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def repo_gc(as_json: bool) -> None:
    """Delete every block not reachable from a pin."""
    result = cas_ops.repo_gc(state().home)
    emit(
        as_json,
        {"removed": result.removed, "bytes_freed": result.bytes_freed},
        f"removed {result.removed} blocks ({result.bytes_freed} bytes)",
    )


@cli.group()
def pin() -> None:
    """Manage pins (roots gc keeps, with their whole DAG)."""


@pin.command("add")
@click.argument("cid", type=str)
@click.option("--name", default="", help="A label for the pin.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def pin_add(cid: str, name: str, as_json: bool) -> None:
    """Pin CID recursively (its whole DAG must be in the store)."""
    root = cid_arg(cid)
    cas_ops.pin_add(state().home, root, name=name)
    emit(as_json, {"pinned": root, "name": name}, f"pinned {root}")


@pin.command("rm")
@click.argument("cid", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def pin_rm(cid: str, as_json: bool) -> None:
    """Remove a pin (the blocks stay until `cats repo gc`)."""
    root = cid_arg(cid)
    cas_ops.pin_rm(state().home, root)
    emit(as_json, {"unpinned": root}, f"unpinned {root}")


@pin.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def pin_ls(as_json: bool) -> None:
    """List pins."""
    pins = cas_ops.pin_ls(state().home)
    emit(
        as_json,
        [{"cid": p.cid, "name": p.name} for p in pins],
        "\n".join(f"{p.cid}  {p.name}".rstrip() for p in pins),
    )
