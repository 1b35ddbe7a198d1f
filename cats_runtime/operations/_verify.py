"""Verify a BOM: re-execute its Order and compare outputs, or re-hash every block it reaches."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from ..cas import CID, DAG_CBOR, RAW, BlockSource, _dagcbor, _unixfs
from ..cas._walk import links_of
from ..errors import BlockNotFoundError, DecodeError, RecordError, VerificationError
from ..execution import KuboPush
from ..records import (
    BOMRecord,
    FunctionRecord,
    InvoiceRecord,
    OrderRecord,
    StructureRecord,
    VerificationRecord,
    decode_record,
)
from ._environments import environment_drift
from ._identity import verify_bom_signature
from ._node import Node
from ._run import execute_order
from ._structure import local_structure, store_structure

_HASH_THREADS = max(2, min(8, 2 * (os.cpu_count() or 1)))

__all__ = ["StructuralReport", "VerifyOutcome", "diff_trees", "load_bom", "verify", "verify_structural"]


def load_bom(node: Node, cid: CID) -> BOMRecord:
    """The BOM stored under ``cid``.

    Raises:
        RecordError: the block is another kind of record.
    """
    record = node.load(cid)
    if not isinstance(record, BOMRecord):
        raise RecordError(f"expected {cid} to be a cats/bom record, found {record.TYPE}")
    return record


def _tree(source: BlockSource, cid: CID, prefix: str, out: dict[str, CID]) -> None:
    info = _unixfs.stat(source, cid)
    if info.kind != "directory":
        out[prefix or "."] = cid
        return
    if not prefix:
        out["./"] = cid
    for entry in _unixfs.ls(source, cid):
        path = f"{prefix}{entry.name}"
        if entry.kind == "directory":
            out[path + "/"] = entry.cid
            _tree(source, entry.cid, path + "/", out)
        else:
            out[path] = entry.cid


def diff_trees(source: BlockSource, expected: CID, found: CID) -> list[str]:
    """Paths whose content differs between two UnixFS trees: ``changed:``, ``missing:``, ``extra:``."""
    a: dict[str, CID] = {}
    b: dict[str, CID] = {}
    _tree(source, expected, "", a)
    _tree(source, found, "", b)
    out: list[str] = []
    for path in sorted(a.keys() | b.keys()):
        if path.endswith("/") and path in a and path in b:
            continue  # a directory differs only through its entries, which are listed
        if path not in b:
            out.append(f"missing: {path}")
        elif path not in a:
            out.append(f"extra: {path}")
        elif a[path] != b[path]:
            out.append(f"changed: {path}")
    return out


@dataclass(frozen=True)
class VerifyOutcome:
    """The verdict of a re-execution."""

    verification: CID
    bom: CID
    verdict: Literal["match", "mismatch", "error"]
    expected: CID
    found: CID | None
    differences: list[str]
    invoice: CID
    log: CID | None
    error: str | None


def verify(
    node: Node,
    bom_cid: CID,
    *,
    address: str | None = None,
    cas_url: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    kubo: KuboPush | None = None,
) -> VerifyOutcome:
    """Re-execute the BOM's Order (no memoization) and compare output CIDs.

    The re-execution's Invoice and a Verification record are stored and indexed. A mismatch is
    a result, not an exception: the caller decides the exit status.

    Raises:
        VerificationError: the BOM is signed but its signature does not verify.
    """
    bom = load_bom(node, bom_cid)
    # A forged or tampered claim is refused before anything runs: re-executing it would only
    # lend it credibility.
    if verify_bom_signature(bom) is False:
        raise VerificationError(f"BOM {bom_cid}: the signature of {bom.issuer} does not verify")
    order = node.load(bom.order)
    if not isinstance(order, OrderRecord):
        raise RecordError(f"expected the BOM's order {bom.order} to be a cats/order record")
    # The Verification names the Structure the re-execution really ran on: embedded Ray is the
    # local Plant, whatever Plant the BOM's own run named.
    ran_on = order.structure
    if address is None:
        structure = node.load(order.structure)
        if not isinstance(structure, StructureRecord) or structure.cloud != "local":
            ran_on = store_structure(local_structure(), node.store)
    with node.repo.write_lock():
        ex = execute_order(
            node,
            order,
            bom.order,
            use_memo=False,
            address=address,
            cas_url=cas_url,
            on_progress=on_progress,
            kubo=kubo,
        )
        invoice = ex.invoice
        differences: list[str] = []
        verdict: Literal["match", "mismatch", "error"]
        if invoice.status != "succeeded" or invoice.output is None:
            verdict = "error"
        elif invoice.output == bom.output:
            verdict = "match"
        else:
            verdict = "mismatch"
            differences = diff_trees(node.store, bom.output, invoice.output)
        claimed = node.load(bom.invoice)
        if isinstance(claimed, InvoiceRecord):  # drift of the Environment is reported, match or not
            differences += environment_drift(claimed.executor, invoice.executor)
        record = VerificationRecord(
            bom=bom_cid,
            invoice=ex.invoice_cid,
            verdict=verdict,
            expected=bom.output,
            found=invoice.output,
            differences=differences,
            structure=ran_on,
        )
        block = record.to_block()
        node.store.put(block)
        node.repo.pins.add(block.cid, name="verification")
        node.catalog.index([(bom.order, order), (ex.invoice_cid, invoice), (block.cid, record)])
    return VerifyOutcome(
        block.cid,
        bom_cid,
        verdict,
        bom.output,
        invoice.output,
        differences,
        ex.invoice_cid,
        invoice.log,
        invoice.error,
    )


@dataclass(frozen=True)
class StructuralReport:
    """What a structural verification checked."""

    bom: CID
    blocks: int
    bytes: int
    records: int
    signed: bool
    seconds: float


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise VerificationError(what)


def verify_structural(
    node: Node, bom_cid: CID, *, progress: Callable[[int], None] | None = None
) -> StructuralReport:
    """Re-hash every block the BOM reaches (records, code, program, inputs, outputs, logs, parents).

    Also checks that each record decodes strictly and that the BOM agrees with its Order and
    Invoice. Nothing is executed.

    Raises:
        BlockNotFoundError: a reachable block is missing (the message names it and its parent).
        IntegrityError: a block does not match its CID.
        VerificationError: the records contradict each other or the signature is invalid.
    """
    started = time.perf_counter()
    store = node.store
    bom = load_bom(node, bom_cid)
    order = node.load(bom.order)
    invoice = node.load(bom.invoice)
    _check(isinstance(order, OrderRecord), f"BOM {bom_cid}: order {bom.order} is not a cats/order record")
    _check(
        isinstance(invoice, InvoiceRecord),
        f"BOM {bom_cid}: invoice {bom.invoice} is not a cats/invoice record",
    )
    assert isinstance(order, OrderRecord) and isinstance(invoice, InvoiceRecord)
    _check(
        invoice.order == bom.order,
        f"BOM {bom_cid}: its invoice is for order {invoice.order}, not {bom.order}",
    )
    _check(invoice.status == "succeeded", f"BOM {bom_cid}: its invoice has status {invoice.status!r}")
    _check(
        invoice.output == bom.output,
        f"BOM {bom_cid}: output {bom.output} but its invoice says {invoice.output}",
    )
    for field_name in ("function", "structure", "inputs", "parents"):
        _check(
            getattr(order, field_name) == getattr(bom, field_name),
            f"BOM {bom_cid}: field {field_name!r} differs from its order's",
        )
    _check(
        isinstance(node.load(bom.function), FunctionRecord), f"BOM {bom_cid}: function is not a cats/function"
    )
    signed = bom.signature is not None
    if signed:
        _check(
            verify_bom_signature(bom) is True, f"BOM {bom_cid}: the signature of {bom.issuer} does not verify"
        )

    def fetch(cid: CID, parent: CID | None) -> bytes:
        try:
            return store.get(cid)  # re-hashed against the CID on every read
        except BlockNotFoundError:
            where = f" (linked from {parent})" if parent else ""
            raise BlockNotFoundError(f"block {cid}{where} is missing from the store at {node.home}") from None

    seen: set[CID] = set()
    stack: list[tuple[CID, CID | None]] = [(bom_cid, None)]
    total = 0
    records = 0
    # Raw leaves (most of the bytes) have no links: they are read and re-hashed in a thread pool,
    # since file reads and sha256 release the GIL.
    with ThreadPoolExecutor(max_workers=_HASH_THREADS) as pool:
        while stack:
            cid, parent = stack.pop()
            if cid in seen:
                continue
            seen.add(cid)
            data = fetch(cid, parent)
            total += len(data)
            if progress is not None:
                progress(len(data))
            if cid.codec == DAG_CBOR:
                value: Any = _dagcbor.decode(data)
                if isinstance(value, dict) and str(value.get("type", "")).startswith("cats/"):
                    try:
                        decode_record(data)
                    except DecodeError as exc:
                        raise VerificationError(f"record {cid} does not decode: {exc}") from exc
                    records += 1
                links = list(_dagcbor.iter_links(value))
            else:
                links = links_of(cid, data)
            leaves = [link for link in dict.fromkeys(links) if link.codec == RAW and link not in seen]
            seen.update(leaves)
            for size in pool.map(lambda leaf, p=cid: len(fetch(leaf, p)), leaves):
                total += size
                if progress is not None:
                    progress(size)
            stack.extend((link, cid) for link in reversed(links) if link.codec != RAW)
    return StructuralReport(bom_cid, len(seen), total, records, signed, time.perf_counter() - started)
