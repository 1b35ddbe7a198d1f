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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from .. import __version__
from ..cas import CID, BlockStore, _unixfs
from ..cas._dagpb import PBLink
from ..errors import BlockNotFoundError, InvalidCIDError, InvalidInputError, LimitError, RecordError
from ..execution import (
    DatumRef,
    Executor,
    JobsExecutor,
    RayExecutor,
    SourceDesc,
    TaskOutcome,
    TaskSpec,
    ray_version,
)
from ..records import (
    BOMRecord,
    DatumResult,
    FunctionRecord,
    InvoiceRecord,
    OrderRecord,
    StructureRecord,
    memo_entries,
    memo_key,
)
from ._node import Node
from ._structure import local_structure, store_structure

__all__ = [
    "INPUT_NAME_RE",
    "Execution",
    "RunOutcome",
    "execute_order",
    "find_parents",
    "load_params_file",
    "make_order",
    "parse_input",
    "parse_param",
    "run",
    "run_order",
]

INPUT_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


# -- parsing user input ------------------------------------------------------------------------
def parse_param(text: str) -> tuple[str, Any]:
    """``k=v`` -> ``(k, value)``: ``v`` is parsed as JSON when it is valid JSON, else kept as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InvalidInputError(f"expected --param key=value, found {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), _check_json(value, key)


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


def parse_input(node: Node, text: str) -> tuple[str, CID]:
    """``name=CID`` or ``name=PATH``; a path is added (and pinned) first. Exactly one must apply."""
    name, sep, value = text.partition("=")
    if not sep or not value:
        raise InvalidInputError(f"expected --input name=CID or name=PATH, found {text!r}")
    if not INPUT_NAME_RE.match(name):
        raise InvalidInputError(f"expected an input name of letters, digits, '_', '-', '.', found {name!r}")
    path = Path(value).expanduser()
    if path.exists():
        with node.repo.write_lock():
            cid = _unixfs.add_path(path, node.store).cid
            node.repo.pins.add(cid, name=f"input:{name}")
        return name, cid
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
    return name, cid


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
) -> tuple[OrderRecord, CID]:
    """Build and store the Order (parents found in the catalog)."""
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
    )
    try:
        block = order.to_block()
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"expected JSON-compatible params, found: {exc}") from exc
    node.store.put(block)
    return order, block.cid


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


def execute_order(
    node: Node,
    order: OrderRecord,
    order_cid: CID,
    *,
    use_memo: bool = True,
    address: str | None = None,
    cas_url: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Execution:
    """Execute ``order`` on Ray and store its Invoice (not indexed: the caller indexes).

    In ``map`` mode the first input (in name order) is the mapped one: one task per top-level
    entry; the other inputs are given whole to every task. Datums whose memo key is in the
    catalog (and whose output is still stored) are not recomputed when ``use_memo``.
    """
    started = _now_ms()
    store = node.store
    function = _load_function(node, order.function)
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
            TaskSpec("batch", code, entrypoint, {k: str(v) for k, v in order.inputs.items()}, params, seed)
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
                )
            )
    total = len(specs)
    done = 0

    def progress(_: TaskOutcome) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    executor: Executor
    if address is not None and address.startswith(("http://", "https://")):
        executor = JobsExecutor(address, store, cas_url=cas_url)
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
) -> RunOutcome:
    """Run a stored Order; an Order that already succeeded returns its BOM at once unless ``force``."""
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
) -> RunOutcome:
    """Make the Order (local Structure by default) and run it. See :func:`run_order`."""
    if isinstance(structure, CID):
        structure_cid = structure
        if not isinstance(node.load(structure_cid), StructureRecord):
            raise RecordError(f"expected {structure_cid} to be a cats/structure record")
    else:
        structure_cid = store_structure(structure or local_structure(), node.store)
    order, order_cid = make_order(node, function, inputs, params or {}, seed, structure_cid)
    return run_order(
        node, order, order_cid, force=force, address=address, cas_url=cas_url, on_progress=on_progress
    )
