"""Run an Order: Function + inputs + params + seed + Structure -> Invoice (+ BOM when it succeeds).

Write order (what makes Ctrl-C safe): output blocks, then the log, Invoice and BOM blocks, then
the pins, and only then the catalog rows, in one transaction. An interrupted run therefore leaves
at worst unreferenced blocks (``repo gc`` collects them), never a catalog row without its record.
"""

from __future__ import annotations

import json
import platform
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from .. import __version__
from ..cas import CID, BlockStore, _unixfs
from ..cas._dagpb import PBLink
from ..cas._profiles import DEFAULT_PROFILE, ImportProfile
from ..errors import (
    AuthError,
    BlockNotFoundError,
    InvalidCIDError,
    InvalidInputError,
    LimitError,
    RecordError,
)
from ..execution import (
    DatumRef,
    Executor,
    JobsExecutor,
    KuboPush,
    RayExecutor,
    SandboxPolicy,
    SandboxSettings,
    SourceDesc,
    TaskOutcome,
    TaskSpec,
    clean_workdir,
    environment_cache_dir,
    ray_version,
    resolve_mode,
)
from ..records import (
    BOMRecord,
    DatumResult,
    FunctionRecord,
    InputImport,
    InvoiceRecord,
    OrderRecord,
    ParamDecl,
    StructureRecord,
    memo_entries,
    memo_key,
)
from ._environments import environment_facts, prepare_environment
from ._node import Node
from ._params import resolve_params
from ._structure import local_structure, store_structure

__all__ = [
    "INPUT_NAME_RE",
    "Execution",
    "RunOutcome",
    "check_plant",
    "execute_order",
    "ParsedInput",
    "find_parents",
    "import_input",
    "import_record",
    "load_params_file",
    "make_order",
    "parse_input",
    "parse_param",
    "run",
    "run_order",
]

INPUT_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


# -- parsing user input ------------------------------------------------------------------------
def parse_param(text: str, declared: Mapping[str, ParamDecl] | None = None) -> tuple[str, Any]:
    """``k=v`` -> ``(k, value)``: ``v`` is parsed as JSON when it is valid JSON, else kept as a string.

    When the Function's params ``declared`` say ``k`` is a string, ``v`` is taken verbatim, so
    ``--param label=3`` means the string ``"3"`` there.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidInputError(f"expected --param key=value, found {text!r}")
    spec = declared.get(key) if declared is not None else None
    if spec is not None and spec.type == "string":
        return key, raw
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, _check_json(value, key)


def _check_json(value: Any, where: str) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise InvalidInputError(f"expected a finite number for param {where!r}, found {value!r}")
    if isinstance(value, dict):
        return {str(k): _check_json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_check_json(v, where) for v in value]
    return value


def load_params_file(path: Path) -> dict[str, Any]:
    """Params from a JSON file holding one object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"expected JSON in the params file {path}, found: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"expected a JSON object in the params file {path}, found {type(value).__name__}"
        )
    return {str(k): _check_json(v, str(k)) for k, v in value.items()}


@dataclass(frozen=True)
class ParsedInput:
    """One ``--input``: its name and CID, and how it was imported when it came from a path.

    Attributes:
        name: The input name.
        cid: Its content.
        imported: The UnixFS settings of the import (None when given as a CID).
        skipped_hidden: Entries skipped because their name starts with a dot.
    """

    name: str
    cid: CID
    imported: InputImport | None = None
    skipped_hidden: int = 0


def import_record(profile: ImportProfile, hidden: bool) -> InputImport:
    """The Order's record of an import made with ``profile``."""
    settings = profile.to_json()
    return InputImport(profile=settings.pop("name"), hidden=hidden, **settings)


def import_input(
    node: Node, text: str, *, hidden: bool = False, profile: ImportProfile = DEFAULT_PROFILE
) -> ParsedInput:
    """``name=CID`` or ``name=PATH``; a path is added (and pinned) first. Exactly one must apply.

    A path is added as ``cats add`` adds it (hidden entries skipped unless ``hidden``), except
    that a symlink given as the path is followed: the input is what it points to.
    """
    name, sep, value = text.partition("=")
    if not sep or not value:
        raise InvalidInputError(f"expected --input name=CID or name=PATH, found {text!r}")
    if not INPUT_NAME_RE.match(name):
        raise InvalidInputError(f"expected an input name of letters, digits, '_', '-', '.', found {name!r}")
    path = Path(value).expanduser()
    if path.exists():
        with node.repo.write_lock():
            result = _unixfs.add_path(path.resolve(), node.store, hidden=hidden, profile=profile)
            node.repo.pins.add(result.cid, name=f"input:{name}")
        return ParsedInput(name, result.cid, import_record(profile, hidden), result.skipped_hidden)
    return ParsedInput(name, _existing_cid(node, name, value))


def parse_input(node: Node, text: str) -> tuple[str, CID]:
    """``name=CID`` or ``name=PATH`` as :func:`import_input` reads it, as ``(name, CID)``."""
    parsed = import_input(node, text)
    return parsed.name, parsed.cid


def _existing_cid(node: Node, name: str, value: str) -> CID:
    try:
        cid = CID.decode(value)
    except InvalidCIDError:
        raise InvalidInputError(
            f"expected input {name!r} to be a CID or an existing path, found {value!r}"
        ) from None
    if not node.store.has(cid):
        raise BlockNotFoundError(
            f"input {name!r}: block {cid} is not in the store at {node.home} (add or fetch it)"
        )
    return cid


# -- Orders ------------------------------------------------------------------------------------
def find_parents(node: Node, inputs: Mapping[str, CID]) -> list[CID]:
    """Parent BOMs: for each input that another run produced, the first BOM that produced it.

    Taking the first producer (not all) keeps the parent list, hence the Order CID, stable when
    the upstream run is re-executed later.
    """
    parents: set[CID] = set()
    for cid in inputs.values():
        producers = node.catalog.producers_oldest_first(cid)
        if producers:
            parents.add(producers[0])
    return sorted(parents)


def make_order(
    node: Node,
    function: CID,
    inputs: Mapping[str, CID],
    params: Mapping[str, Any],
    seed: int,
    structure: CID,
    imports: Mapping[str, InputImport] | None = None,
) -> tuple[OrderRecord, CID]:
    """Build and store the Order (parents found in the catalog; ``imports`` per path input).

    When the Function declares its params, ``params`` are checked against the declaration and
    its defaults are filled in, so the Order records every value the function will see.
    """
    params = resolve_params(_load_function(node, function).params, params)
    if not inputs:
        raise InvalidInputError("expected at least one --input name=CID|PATH, found none")
    for name in inputs:
        if not INPUT_NAME_RE.match(name):
            raise InvalidInputError(
                f"expected an input name of letters, digits, '_', '-', '.', found {name!r}"
            )
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise InvalidInputError(f"expected a seed in [0, 2**63), found {seed!r}")
    order = OrderRecord(
        function=function,
        structure=structure,
        inputs=dict(inputs),
        params=dict(params),
        seed=seed,
        parents=find_parents(node, inputs),
        imports=dict(imports or {}),
    )
    try:
        block = order.to_block()
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"expected JSON-compatible params, found: {exc}") from exc
    node.store.put(block)
    return order, block.cid


def check_plant(structure: StructureRecord, address: str | None) -> None:
    """Refuse a run that would not execute on the Plant its Structure names.

    A Structure in an Order (so in the BOM) is a claim about where the work ran. The local
    Structure is the embedded Ray; a cloud Structure's Plant is a remote cluster, reached with
    an address (``cats redeploy`` reads it from the provisioned stack's outputs). Embedded Ray
    is never a cloud Plant, so a cloud Structure without an address is refused before anything
    runs or is stored.

    Raises:
        InvalidInputError: ``structure`` is not local and the run would use embedded local Ray.
    """
    if structure.cloud != "local" and address is None:
        raise InvalidInputError(
            f"refusing to record Structure {structure.cloud}/{structure.stack}: the run would execute on "
            f"the local Plant (embedded Ray), not on the {structure.cloud} Plant of stack "
            f"{structure.stack!r}; run on that Plant's Ray with --ray-address (ray://HOST:10001 or "
            "http://HOST:8265), or drop --structure/--stack to record the local Structure"
        )


# -- execution ---------------------------------------------------------------------------------
@dataclass
class Execution:
    """An Order executed once: the Invoice record (stored), and what the catalog needs."""

    invoice: InvoiceRecord
    invoice_cid: CID
    computed: int
    memoized: int
    outcomes: list[TaskOutcome] = field(default_factory=list)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _load_function(node: Node, cid: CID) -> FunctionRecord:
    record = node.load(cid)
    if not isinstance(record, FunctionRecord):
        raise RecordError(f"expected {cid} to be a cats/function record, found {record.TYPE}")
    return record


def _source_for(node: Node, address: str | None, cas_url: str | None) -> SourceDesc:
    if cas_url:
        return SourceDesc("gateway", cas_url)
    if address is None:
        return SourceDesc("fs", str(node.repo.blocks.root))
    return SourceDesc("inline")


def _merge_outputs(store: BlockStore, parts: list[tuple[str, CID]]) -> CID:
    """One directory holding every top-level entry of every datum's output directory.

    Built from the datums' links without materializing anything; a large merged directory
    becomes a HAMT exactly as Kubo would shard it.

    Raises:
        InvalidInputError: two datums wrote an entry of the same name.
    """
    links: dict[str, tuple[PBLink, str]] = {}
    for key, root in parts:
        for name, link in _unixfs.links(store, root):
            if name in links:
                raise InvalidInputError(
                    f"output name collision: {name!r} written by datum {links[name][1]!r} "
                    f"and by datum {key!r}"
                )
            links[name] = (link, key)
    entries = [(name, link.cid, link.tsize or 0) for name, (link, _) in links.items()]
    return _unixfs.add_directory(entries, store).cid


def _log_text(sections: list[tuple[str, str]]) -> str:
    # One section per task, in datum order, so a log reads the same however Ray scheduled them.
    parts: list[str] = []
    for title, body in sections:
        parts.append(f"==> {title} <==\n{body}")
        if body and not body.endswith("\n"):
            parts.append("\n")
    return "".join(parts)


def _sandbox_for(
    node: Node, function: FunctionRecord, cid: CID, policy: SandboxPolicy, local: bool
) -> tuple[SandboxSettings, str | None]:
    """The settings every task of this run gets, and a warning when ``auto`` fell back to ``none``.

    Raises:
        AuthError: the Function declares the network and the node does not allow it.
    """
    if function.network and not policy.allow_network:
        raise AuthError(f"expected a Function without network access on this node, found {cid} declaring it")
    mode, why = resolve_mode(policy.mode, network=function.network)
    workdir: str | None = None
    if local:
        # Task directories live in the home (not a shared /tmp): private to the node's uid, and
        # removed at the start of the next run when a crash left them behind.
        work = node.home / "work"
        work.mkdir(mode=0o700, exist_ok=True)
        work.chmod(0o700)
        clean_workdir(work)
        workdir = str(work)
    settings = SandboxSettings(mode=mode, limits=policy.limits, network=function.network, workdir=workdir)
    warning = None if why is None else f"warning: {why}; the tasks ran with --sandbox=none (unconfined)"
    return settings, warning


def execute_order(
    node: Node,
    order: OrderRecord,
    order_cid: CID,
    *,
    use_memo: bool = True,
    address: str | None = None,
    cas_url: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    sandbox: SandboxPolicy | None = None,
    kubo: KuboPush | None = None,
) -> Execution:
    """Execute ``order`` on Ray and store its Invoice (not indexed: the caller indexes).

    In ``map`` mode the first input (in name order) is the mapped one: one task per top-level
    entry; the other inputs are given whole to every task. Datums whose memo key is in the
    catalog (and whose output is still stored) are not recomputed when ``use_memo``. Every task
    runs sandboxed as ``sandbox`` says (default: ``auto``, default limits).
    """
    started = _now_ms()
    store = node.store
    function = _load_function(node, order.function)
    local = address is None and cas_url is None
    box, box_warning = _sandbox_for(node, function, order.function, sandbox or SandboxPolicy(), local)
    for name, cid in order.inputs.items():
        if not store.has(cid):
            raise BlockNotFoundError(f"input {name!r}: block {cid} is not in the store at {node.home}")
    specs: list[TaskSpec] = []
    data: dict[str, DatumResult] = {}
    keys_order: list[str] = []
    mapped: str | None = None
    code, entrypoint, params, seed = str(function.code), function.entrypoint, dict(order.params), order.seed
    if function.mode == "batch":
        specs.append(
            TaskSpec(
                "batch",
                code,
                entrypoint,
                {k: str(v) for k, v in order.inputs.items()},
                params,
                seed,
                None,
                box,
            )
        )
    else:
        mapped = sorted(order.inputs)[0]
        info = _unixfs.stat(store, order.inputs[mapped])
        if info.kind != "directory":
            raise InvalidInputError(
                f"expected input {mapped!r} of a map-mode function to be a directory, found a {info.kind}"
            )
        context = {k: v for k, v in order.inputs.items() if k != mapped}
        entries = _unixfs.ls(store, order.inputs[mapped])
        memo_keys = {
            e.name: memo_key(order.function, order.params, order.seed, mapped, e.name, e.cid, context)
            for e in entries
        }
        hits = node.catalog.memo_get_many(memo_keys.values()) if use_memo else {}
        for e in entries:
            key = f"{mapped}/{e.name}"
            keys_order.append(key)
            hit = hits.get(memo_keys[e.name])
            if hit is not None and store.has(hit):
                data[key] = DatumResult(
                    input=mapped,
                    name=e.name,
                    cid=e.cid,
                    output=hit,
                    status="succeeded",
                    memoized=True,
                    error=None,
                )
                continue
            specs.append(
                TaskSpec(
                    key,
                    code,
                    entrypoint,
                    {k: str(v) for k, v in context.items()},
                    params,
                    seed,
                    DatumRef(mapped, e.name, str(e.cid)),
                    box,
                )
            )
    # The Environment is checked and built once here, before any task starts: a mismatched
    # interpreter fails the whole run in one line, and tasks on this machine find it built.
    environment = None
    if function.environment is not None:
        env_cache = environment_cache_dir(node.home)
        environment = prepare_environment(store, function.environment, env_cache)
        specs = [replace(s, environment=str(function.environment), env_cache=str(env_cache)) for s in specs]
    total = len(specs)
    done = 0

    def progress(_: TaskOutcome) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    executor: Executor
    if address is not None and address.startswith(("http://", "https://")):
        executor = JobsExecutor(address, store, cas_url=cas_url, kubo=kubo)
    else:
        source = _source_for(node, address, cas_url)
        executor = RayExecutor(source, address=address, ship=store, home=node.home)
    outcomes = executor.run(specs, store, on_done=progress) if specs else []
    by_key = {o.key: o for o in outcomes}
    for spec in specs:
        o = by_key[spec.key]
        if spec.datum is not None:
            data[spec.key] = DatumResult(
                input=spec.datum.input,
                name=spec.datum.name,
                cid=CID.decode(spec.datum.cid),
                output=o.output,
                status=o.status,
                memoized=False,
                error=o.error,
            )
    failed = [o for o in outcomes if o.status == "failed"]
    error: str | None = None
    output: CID | None = None
    if failed:
        first = failed[0]
        error = f"{len(failed)} of {len(specs)} task(s) failed; first {first.key}: {first.error}"
    elif function.mode == "batch":
        output = outcomes[0].output
    else:
        try:
            parts = [(k, out) for k in keys_order if (out := data[k].output) is not None]
            output = _merge_outputs(store, parts)
        except (InvalidInputError, LimitError) as exc:
            error = str(exc)
    sections: list[tuple[str, str]] = []
    for key in keys_order or ["batch"]:
        if key in by_key:
            o = by_key[key]
            sections.append((f"{key} [{o.status} on {o.host or '?'}]", o.log))
        elif key in data:
            sections.append((f"{key} [memoized: {data[key].output}]", ""))
    if box_warning is not None:
        sections.append(("sandbox", box_warning + "\n"))
    if error is not None:
        sections.append(("run", f"error: {error}\n"))
    log = _unixfs.add_bytes(_log_text(sections).encode("utf-8"), store)
    hosts = sorted({o.host for o in outcomes if o.host})
    invoice = InvoiceRecord(
        order=order_cid,
        status="failed" if error is not None else "succeeded",
        output=None if error is not None else output,
        data=[data[k] for k in keys_order],
        log=log,
        executor={
            "cats": __version__,
            "ray": ray_version(),
            "python": platform.python_version(),
            "driver": socket.gethostname(),
            "workers": ",".join(hosts),
            "cluster": executor.cluster or "none",
            "sandbox": box.mode,
            "network": "on" if box.network else "off",
            **(
                environment_facts(function.environment, environment, (o.facts for o in outcomes))
                if function.environment is not None and environment is not None
                else {}
            ),
        },
        started_ms=started,
        finished_ms=_now_ms(),
        error=error,
    )
    block = invoice.to_block()
    store.put(block)
    memoized = sum(1 for d in data.values() if d.memoized)
    return Execution(invoice, block.cid, computed=len(specs), memoized=memoized, outcomes=outcomes)


# -- the run operation -------------------------------------------------------------------------
@dataclass(frozen=True)
class RunOutcome:
    """What ``cats run`` reports."""

    order: CID
    invoice: CID
    bom: CID | None
    output: CID | None
    log: CID | None
    status: Literal["succeeded", "failed"]
    error: str | None
    reused: bool
    computed: int
    memoized: int


def run_order(
    node: Node,
    order: OrderRecord,
    order_cid: CID,
    *,
    force: bool = False,
    address: str | None = None,
    cas_url: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    sandbox: SandboxPolicy | None = None,
) -> RunOutcome:
    """Run a stored Order; an Order that already succeeded returns its BOM at once unless ``force``.

    ``sandbox`` is the node's sandbox policy (default ``auto`` with default limits).

    Raises:
        InvalidInputError: the Order's Structure names a Plant this run would not execute on
            (see :func:`check_plant`), or its params do not match the Function's declaration.
    """
    structure = node.load(order.structure)
    if not isinstance(structure, StructureRecord):
        raise RecordError(f"expected {order.structure} to be a cats/structure record, found {structure.TYPE}")
    check_plant(structure, address)
    declared = _load_function(node, order.function).params
    if declared is not None and resolve_params(declared, order.params) != dict(order.params):
        missing = sorted(set(declared) - set(order.params))
        raise InvalidInputError(f"expected the Order to set every declared param, found {missing} unset")
    if not force:
        for existing in node.catalog.boms_for_order(order_cid):
            if node.store.has(existing):
                bom = node.load(existing)
                # Only this node's own results are handed out again: a BOM fetched from a peer
                # is that peer's claim, to be checked with `cats verify`, not a result of ours.
                if bom.issuer is not None and bom.issuer != node.identity.did:
                    continue
                inv = node.load(bom.invoice)
                return RunOutcome(
                    order_cid,
                    bom.invoice,
                    existing,
                    bom.output,
                    inv.log,
                    "succeeded",
                    None,
                    True,
                    0,
                    len(inv.data),
                )
    with node.repo.write_lock():
        ex = execute_order(
            node,
            order,
            order_cid,
            use_memo=not force,
            address=address,
            cas_url=cas_url,
            on_progress=on_progress,
            sandbox=sandbox,
        )
        invoice = ex.invoice
        records: list[tuple[CID, Any]] = [(order_cid, order), (ex.invoice_cid, invoice)]
        bom_cid: CID | None = None
        if invoice.status == "succeeded":
            assert invoice.output is not None
            bom = node.sign(
                BOMRecord(
                    order=order_cid,
                    invoice=ex.invoice_cid,
                    function=order.function,
                    structure=order.structure,
                    inputs=dict(order.inputs),
                    output=invoice.output,
                    parents=list(order.parents),
                    issuer=None,
                    signature=None,
                )
            )
            block = bom.to_block()
            node.store.put(block)
            bom_cid = block.cid
            records.append((bom_cid, bom))
            node.repo.pins.add(bom_cid, name="bom")
        else:
            node.repo.pins.add(ex.invoice_cid, name="failed-invoice")
        for cid in (order.function, order.structure):
            records.insert(0, (cid, node.load(cid)))
        node.catalog.index(records, memo_entries(ex.invoice_cid, invoice, order))
    return RunOutcome(
        order_cid,
        ex.invoice_cid,
        bom_cid,
        invoice.output,
        invoice.log,
        invoice.status,
        invoice.error,
        False,
        ex.computed,
        ex.memoized,
    )


def run(
    node: Node,
    *,
    function: CID,
    inputs: Mapping[str, CID],
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    structure: StructureRecord | CID | None = None,
    force: bool = False,
    address: str | None = None,
    cas_url: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    imports: Mapping[str, InputImport] | None = None,
    sandbox: SandboxPolicy | None = None,
) -> RunOutcome:
    """Make the Order (local Structure by default) and run it. See :func:`run_order`.

    Raises:
        InvalidInputError: as :func:`run_order`, checked before the Order is stored.
    """
    if isinstance(structure, CID):
        structure_cid = structure
        record = node.load(structure_cid)
        if not isinstance(record, StructureRecord):
            raise RecordError(f"expected {structure_cid} to be a cats/structure record")
        check_plant(record, address)
    else:
        check_plant(structure or local_structure(), address)
        structure_cid = store_structure(structure or local_structure(), node.store)
    order, order_cid = make_order(node, function, inputs, params or {}, seed, structure_cid, imports)
    return run_order(
        node,
        order,
        order_cid,
        force=force,
        address=address,
        cas_url=cas_url,
        on_progress=on_progress,
        sandbox=sandbox,
    )
