"""Commands of the content-addressed core: add, cat, get, show, car, repo, pin."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path
from typing import Any

import click

from ..cas import CID
from ..cas._profiles import DEFAULT_PROFILE, PROFILES
from ..operations import cas_ops
from ._app import cid_arg, command_set, emit, progress, state

__all__ = ["cli"]

cli = command_set()  # this module's commands; cli/_main.py adds them to `cats`


def _content_arg(value: str) -> CID:
    """``CID`` or ``CID/path/in/it`` (as ``ipfs cat`` takes), resolved through UnixFS directories."""
    return cas_ops.resolve(state().home, value)


def _tree_size(path: Path, hidden: bool) -> int:
    """File bytes the add will read (for the progress bar): what the importer skips is not counted."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, dirs, files in os.walk(path):
        if not hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not hidden and name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


@cli.command()
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--cid-version",
    type=click.Choice(["0", "1"]),
    default=None,
    help="1 (default) equals `ipfs add --cid-version=1` (raw leaves); 0 equals plain `ipfs add`.",
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default=None,
    help=f"Named import settings (default {DEFAULT_PROFILE.name}); unixfs-v0-2015 = --cid-version 0.",
)
@click.option(
    "-H", "--hidden", is_flag=True, help="Include files whose name starts with a dot (`ipfs add -r -H`)."
)
@click.option("--only-hash", "-n", is_flag=True, help="Compute the CID without storing anything.")
@click.option("--pin/--no-pin", default=True, show_default=True, help="Pin the root so gc keeps it.")
@click.option(
    "--exclude", multiple=True, metavar="PATTERN", help="Skip entries whose name matches (fnmatch)."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def add(
    path: str,
    cid_version: str | None,
    profile: str | None,
    hidden: bool,
    only_hash: bool,
    pin: bool,
    exclude: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add a file or directory and print its CID (identical to Kubo's `ipfs add -r`).

    As in Kubo, names starting with a dot are skipped unless -H is given, and symlinks are
    stored as links (a symlink given as PATH too; write PATH/ to add what it points to).
    """
    total = _tree_size(Path(path), hidden) if not os.path.islink(path) else 0
    with progress(
        f"adding {os.path.basename(os.path.normpath(path))}", total, enabled=not as_json
    ) as advance:
        result = cas_ops.add(
            state().home,
            path,
            cid_version=None if cid_version is None else int(cid_version),
            profile=profile,
            hidden=hidden,
            only_hash=only_hash,
            pin=pin and not only_hash,
            exclude=exclude,
            progress=advance,
        )
    if result.skipped_hidden and not as_json:
        click.echo(
            f"skipped {result.skipped_hidden} hidden entr{'y' if result.skipped_hidden == 1 else 'ies'} "
            "(names starting with '.'); -H includes them",
            err=True,
        )
    emit(
        as_json,
        {
            "cid": result.cid,
            "size": result.size,
            "stored": not only_hash,
            "pinned": result.pinned,
            "skipped_hidden": result.skipped_hidden,
            "profile": result.profile.name,
        },
        str(result.cid),
    )


@cli.command()
@click.argument("cid", type=str, metavar="CID[/PATH]")
def cat(cid: str) -> None:
    """Write a file's bytes to stdout, verifying every block."""
    out = sys.stdout.buffer
    for chunk in cas_ops.cat(state().home, _content_arg(cid)):
        out.write(chunk)
    out.flush()


@cli.command()
@click.argument("cid", type=str, metavar="CID[/PATH]")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Where to write the file or directory (must not exist, or be an empty directory).",
)
@click.option(
    "--verbatim-symlinks",
    is_flag=True,
    help="Write absolute and out-of-tree symlinks as stored (as `ipfs get`); they are never followed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def get(cid: str, output: Path, verbatim_symlinks: bool, as_json: bool) -> None:
    """Write a file or directory tree to OUTPUT, verifying every block."""
    root = _content_arg(cid)
    with progress(f"getting {root}", None, enabled=not as_json) as advance:
        cas_ops.get(state().home, root, output, progress=advance, verbatim_symlinks=verbatim_symlinks)
    emit(as_json, {"cid": root, "output": output}, f"wrote {output}")


@cli.command()
@click.argument("cid", type=str, metavar="CID[/PATH]")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
def show(cid: str, as_json: bool) -> None:
    """Show a block: records as DAG-JSON, dag-pb/UnixFS nodes and raw blocks summarized."""
    info = cas_ops.show(state().home, _content_arg(cid))
    emit(as_json, info.to_json(), info.to_text)


@cli.group()
def car() -> None:
    """Export and import CAR files (v1, and v2 with an index), compatible with `ipfs dag export/import`."""


@car.command("export")
@click.argument("cid", type=str)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The CAR file to write ('-' for stdout).",
)
@click.option(
    "--version",
    "car_version",
    type=click.Choice(["1", "2"]),
    default="1",
    show_default=True,
    help="1: CARv1 as `ipfs dag export`; 2: CARv2 with a MultihashIndexSorted index (go-car, Lassie).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def car_export(cid: str, output: Path, car_version: str, as_json: bool) -> None:
    """Write the whole DAG under CID to a CAR file."""
    root = cid_arg(cid)
    count = cas_ops.car_export(state().home, root, output, version=int(car_version))
    if str(output) != "-":
        emit(
            as_json, {"root": root, "blocks": count, "output": output}, f"exported {count} blocks to {output}"
        )


@car.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pin/--no-pin", default=True, show_default=True, help="Pin the CAR's roots.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def car_import(path: Path, pin: bool, as_json: bool) -> None:
    """Import a CAR (v1 or v2) file; every block is verified, and nothing is stored unless all are valid.

    A CARv2's index is not read: the blocks of its data payload are checked one by one.
    """
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


@repo.command("migrate")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def repo_migrate(as_json: bool) -> None:
    """Pack the blocks an older repository keeps as one file each (safe to re-run)."""
    with progress("packing block files", None, enabled=not as_json) as advance:
        result = cas_ops.repo_migrate(state().home, progress=advance)
    emit(
        as_json,
        {
            "packed": result.packed,
            "bytes_packed": result.bytes_packed,
            "large": result.large,
            "corrupt": result.corrupt,
        },
        f"packed {result.packed} blocks ({result.bytes_packed} bytes); {result.large} large blocks stay "
        f"files; {result.corrupt} corrupt files left in place (see cats repo verify)",
    )


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
