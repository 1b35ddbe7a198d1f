"""Commands of runs and provenance: run, verify, lineage, log, ls, catalog."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..cas import Block, MemoryBlockStore
from ..cas._profiles import DEFAULT_PROFILE, PROFILES, get_profile
from ..errors import FunctionFailedError, InvalidInputError
from ..operations import (
    LINEAGE_FORMATS,
    SCAFFOLD_ENTRYPOINT,
    Node,
    RunListing,
    build_function,
    build_structure,
    check_plant,
    function_label,
    import_input,
    inspect_function,
    iter_runs,
    lineage,
    load_params_file,
    local_structure,
    new_function,
    parse_param,
    read_log,
    read_requirements,
    rebuild_catalog,
    render_lineage,
    resolve_params,
    run,
    verify,
    verify_structural,
)
from ..operations._structure import home_environments
from ._app import cid_arg, command_set, emit, emit_stream, progress, state
from ._verdict import report_verification

__all__ = ["cli"]

cli = command_set()  # this module's commands; cli/_main.py adds them to `cats`


@contextmanager
def _node() -> Iterator[Node]:
    with Node.open(state().home) as node:
        yield node


def _advance(advance: Callable[[int], None]) -> Callable[[int, int], None]:
    def on_progress(done: int, total: int) -> None:
        advance(1)

    return on_progress


@cli.command("run")
@click.option(
    "--function",
    "function_spec",
    required=True,
    metavar="DIR:module:callable",
    help="Code directory and entrypoint; the directory is hashed (caches, VCS, venvs excluded).",
)
@click.option(
    "--mode",
    type=click.Choice(["batch", "map"]),
    default="batch",
    show_default=True,
    help="batch: one call gets all inputs; map: one call per top-level entry of the first input.",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    required=True,
    metavar="NAME=CID|PATH",
    help="A named input; a local path is added to the store first, as `cats add` adds it. Repeatable.",
)
@click.option(
    "-H", "--hidden", is_flag=True, help="Include hidden files (names starting with '.') of path inputs."
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default=DEFAULT_PROFILE.name,
    show_default=True,
    help="UnixFS import settings for path inputs (recorded in the Order).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter; VALUE is parsed as JSON when it is JSON, else taken as a string. Repeatable.",
)
@click.option(
    "--params-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON object of parameters (--param values override it).",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**63 - 1),
    default=0,
    show_default=True,
    help="Seed handed to the function (ctx.seed).",
)
@click.option(
    "--force", is_flag=True, help="Run even if this exact Order already succeeded; no memoized datums."
)
@click.option(
    "--ray-address",
    metavar="URL",
    help="Existing Ray cluster: ray://host:10001 (Ray Client). Default: embedded local Ray.",
)
@click.option(
    "--cas-url",
    metavar="URL",
    help="Gateway URL the cluster's workers read blocks from (default: local disk or shipped).",
)
@click.option(
    "--structure",
    "structure_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Pulumi program directory describing the Plant (default: the local Structure).",
)
@click.option("--stack", metavar="ORG", help="Stack of --structure (reads stacks/Pulumi.<ORG>.yaml).")
@click.option(
    "--requirements",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Pinned requirements (every line name==version; see `cats lock`): the Function's Environment.",
)
@click.option("--image", metavar="sha256:DIGEST", help="Container image digest recorded in the Function.")
@click.option("--name", help="Human name of the Function (default: the callable's name).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def run_command(
    function_spec: str,
    mode: str,
    inputs: tuple[str, ...],
    hidden: bool,
    profile: str,
    params: tuple[str, ...],
    params_file: Path | None,
    seed: int,
    force: bool,
    ray_address: str | None,
    cas_url: str | None,
    structure_dir: Path | None,
    stack: str | None,
    requirements: Path | None,
    image: str | None,
    name: str | None,
    as_json: bool,
) -> None:
    """Run a Function on Ray and record the run: prints the BOM CID and the output CID.

    Exit status 1 when the function fails: a failed Invoice is stored (see `cats log`).
    """
    if (structure_dir is None) != (stack is None):
        raise InvalidInputError("expected --structure DIR and --stack ORG together, found only one of them")
    # Pre-flight: everything checkable without Ray, before anything is stored (user code is only
    # read, never imported here).
    declared = inspect_function(function_spec)
    values: dict[str, Any] = load_params_file(params_file) if params_file else {}
    values.update(parse_param(p, declared) for p in params)
    values = resolve_params(declared, values)
    if requirements is not None:
        read_requirements(requirements)  # a bad file stops here, before inputs are added
    staged = MemoryBlockStore()
    structure = None
    if structure_dir and stack:
        # The program's Environment from the home's memo (`cats structure --store` fills it).
        memo, held = home_environments(state().home)
        structure = build_structure(
            structure_dir, stack, staged, memo=memo if held is not None else None, source=held
        )
    check_plant(structure or local_structure(), ray_address)
    with _node() as node:
        parsed = [import_input(node, text, hidden=hidden, profile=get_profile(profile)) for text in inputs]
        named = [(p.name, p.cid) for p in parsed]
        if len({n for n, _ in named}) != len(named):
            raise InvalidInputError(f"expected distinct input names, found {[n for n, _ in named]}")
        for p in parsed:
            if p.skipped_hidden and not as_json:
                click.echo(
                    f"input {p.name}: skipped {p.skipped_hidden} hidden "
                    f"entr{'y' if p.skipped_hidden == 1 else 'ies'} (names starting with '.'); "
                    "-H includes them",
                    err=True,
                )
        _, function = build_function(
            function_spec,
            node.store,
            mode=mode,  # type: ignore[arg-type]
            requirements=requirements,
            image=image,
            name=name,
            resolved=node.home / "envs" / ".resolved",
        )
        node.store.put_many(Block.checked(cid, staged.get(cid)) for cid in staged)
        with progress("running", None, enabled=not as_json) as advance:
            outcome = run(
                node,
                function=function,
                inputs=dict(named),
                imports={p.name: p.imported for p in parsed if p.imported is not None},
                params=values,
                seed=seed,
                structure=structure,
                force=force,
                address=ray_address,
                cas_url=cas_url,
                on_progress=_advance(advance),
            )
    data = {
        "status": outcome.status,
        "bom": outcome.bom,
        "output": outcome.output,
        "order": outcome.order,
        "invoice": outcome.invoice,
        "log": outcome.log,
        "reused": outcome.reused,
        "computed": outcome.computed,
        "memoized": outcome.memoized,
        "error": outcome.error,
    }
    if outcome.status == "succeeded":
        note = (
            " (this Order already ran: its BOM, nothing executed)"
            if outcome.reused
            else (f" ({outcome.computed} computed, {outcome.memoized} memoized)" if outcome.memoized else "")
        )
        emit(as_json, data, f"bom    {outcome.bom}\noutput {outcome.output}{note}")
        return
    emit(as_json, data, f"invoice {outcome.invoice} (failed)\nlog     {outcome.log}")
    raise FunctionFailedError(f"the run failed: {outcome.error} (see `cats log {outcome.invoice}`)")


@cli.command("verify")
@click.argument("bom")
@click.option("--structural", is_flag=True, help="Only re-hash every block the BOM reaches; execute nothing.")
@click.option("--ray-address", metavar="URL", help="Re-execute on this Ray cluster (ray://...).")
@click.option("--cas-url", metavar="URL", help="Gateway URL the cluster's workers read blocks from.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def verify_command(
    bom: str, structural: bool, ray_address: str | None, cas_url: str | None, as_json: bool
) -> None:
    """Re-execute a BOM's Order and compare outputs (exit 4 and a per-file diff on a mismatch)."""
    cid = cid_arg(bom)
    with _node() as node:
        if structural:
            with progress("re-hashing", None, enabled=not as_json) as advance:
                report = verify_structural(node, cid, progress=advance)
            emit(
                as_json,
                {
                    "bom": cid,
                    "verdict": "intact",
                    "blocks": report.blocks,
                    "bytes": report.bytes,
                    "records": report.records,
                    "signed": report.signed,
                    "seconds": report.seconds,
                },
                f"intact: {report.blocks} blocks, {report.bytes} bytes, {report.records} records re-hashed"
                f"{', signature valid' if report.signed else ''}",
            )
            return
        with progress("re-executing", None, enabled=not as_json) as advance:
            outcome = verify(node, cid, address=ray_address, cas_url=cas_url, on_progress=_advance(advance))
    report_verification(outcome, as_json)


@cli.command("lineage")
@click.argument("cid")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(LINEAGE_FORMATS)),
    default="text",
    show_default=True,
    help="Text tree, Graphviz DOT, Mermaid or JSON.",
)
@click.option("--depth", type=click.IntRange(0, 1000), default=32, show_default=True, help="Hops to follow.")
def lineage_command(cid: str, fmt: str, depth: int) -> None:
    """Runs and data upstream and downstream of a BOM or data CID."""
    with _node() as node:
        graph = lineage(node, cid_arg(cid), depth=depth)
        click.echo(render_lineage(graph, fmt))


@cli.command("log")
@click.argument("cid")
def log_command(cid: str) -> None:
    """Print the captured log (stdout, stderr, log records, tracebacks) of a BOM or an Invoice."""
    with _node() as node:
        out = sys.stdout.buffer
        for chunk in read_log(node, cid_arg(cid)):
            out.write(chunk)
        out.flush()


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@cli.command("ls")
@click.option("--limit", type=click.IntRange(1), default=None, help="Show at most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def ls_command(limit: int | None, as_json: bool) -> None:
    """Runs in the catalog, newest first (a BOM when the run succeeded, else its Invoice).

    Each run shows its issuer, code CID, seed and params, and the verdict of its re-executions
    (`cats verify`): a BOM that did not reproduce is marked, with the Verification's CID.
    """

    def as_data(r: RunListing) -> dict[str, Any]:
        return {
            "finished": _when(r.row.finished_ms),
            "status": r.row.status,
            "bom": r.row.bom,
            "invoice": r.row.invoice,
            "order": r.row.order,
            "function": r.row.function_name,
            "output": r.row.output,
            "error": r.row.error,
            "function_cid": r.row.function,
            "code": r.facts.code,
            "issuer": r.facts.issuer,
            "params": r.facts.params,
            "seed": r.facts.seed,
            "verdict": r.facts.verdict,
            "verification": r.facts.verification,
            "verifications": r.facts.verifications,
        }

    def text(r: RunListing) -> list[str]:
        label = function_label(r.row.function_name[:16] or "?", r.row.function)
        params = json.dumps(r.facts.params, sort_keys=True, separators=(",", ":"))
        facts = r.facts
        lines = [
            f"{_when(r.row.finished_ms)}  {r.row.status:9}  {r.facts.verdict or '-':9}  {label:24}  "
            f"{r.row.bom or r.row.invoice}",
            f"    issuer {facts.issuer or '-'}  code {facts.code}  seed {facts.seed}  params {params}",
        ]
        if r.facts.verdict not in (None, "match"):
            lines.append(f"    NOT REPRODUCED ({r.facts.verdict}): verification {r.facts.verification}")
        return lines

    head = f"{'FINISHED (UTC)':19}  {'STATUS':9}  {'VERIFIED':9}  {'FUNCTION':24}  BOM / INVOICE"
    # Streamed: a catalog of a million runs is listed in flat memory, the first lines at once.
    with _node() as node:
        rows = iter_runs(node, limit)
        emit_stream(as_json, (as_data(r) for r in rows) if as_json else rows, text, head)


@cli.group("catalog")
def catalog_group() -> None:
    """The SQLite index of records (rebuildable from the blocks at any time)."""


@catalog_group.command("rebuild")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def catalog_rebuild(as_json: bool) -> None:
    """Recreate the catalog by scanning every block and decoding the CATs records."""
    with _node() as node:
        stats = rebuild_catalog(node)
    emit(
        as_json,
        {"blocks": stats.blocks, "records": stats.records, "by_type": stats.by_type},
        f"indexed {stats.records} records from {stats.blocks} blocks"
        + "".join(f"\n  {t}: {n}" for t, n in sorted(stats.by_type.items())),
    )


# -- cats new ----------------------------------------------------------------------------------
@cli.command("new")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def new_command(directory: Path) -> None:
    """Create a working Function directory: main.py with a documented main(ctx), cats.toml, README.md."""
    target = new_function(directory)
    click.echo(
        f"created {target}: main.py, cats.toml (params), README.md\n"
        f"run it: cats run --function {target}:{SCAFFOLD_ENTRYPOINT} --input data=PATH"
    )
