"""What ``cats ls`` and ``cats lineage`` say about a run: who signed it, what ran, how it verified.

Everything comes from the records themselves (the BOM's issuer, the Order's params and seed,
the Function's code) and from the catalog's index of Verification records; nothing is inferred.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..cas import CID
from ..errors import BlockNotFoundError, DecodeError
from ..records import BOMRecord, FunctionRecord, OrderRecord, RunRow, VerdictRow
from ._node import Node

__all__ = [
    "RunFacts",
    "RunListing",
    "function_label",
    "iter_runs",
    "list_runs",
    "run_facts",
    "run_facts_many",
]


def function_label(name: str, function: CID | None) -> str:
    """``name`` and the tail of the Function's CID: two functions named ``main`` stay distinct.

    The tail, not the head: every dag-cbor CIDv1 starts with the same ``bafyrei``.
    """
    return name if function is None else f"{name} …{str(function)[-6:]}"


@dataclass(frozen=True)
class RunFacts:
    """The facts of one run as its records state them (None where a record is not in the store).

    Attributes:
        function: The Function record's CID.
        function_name: Its ``name`` ("" when the record is missing).
        code: The code directory's CID.
        issuer: The BOM's signer (``did:key``), None for an unsigned BOM or a failed run.
        params: The Order's params (defaults of declared params included).
        seed: The Order's seed.
        verdict: The standing verdict of its re-executions (see ``Catalog.verdict_for``), or None.
        verification: The Verification record behind ``verdict``.
        verifications: How many Verifications the BOM has.
    """

    function: CID | None
    function_name: str
    code: CID | None
    issuer: str | None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    verdict: str | None = None
    verification: CID | None = None
    verifications: int = 0

    @property
    def label(self) -> str:
        """The Function's name with a short CID (see :func:`function_label`)."""
        return function_label(self.function_name or "run", self.function)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view (CIDs as text)."""
        return {
            "function": _s(self.function),
            "function_name": self.function_name,
            "code": _s(self.code),
            "issuer": self.issuer,
            "params": self.params,
            "seed": self.seed,
            "verdict": self.verdict,
            "verification": _s(self.verification),
            "verifications": self.verifications,
        }


def _s(cid: CID | None) -> str | None:
    return None if cid is None else str(cid)


def _load(node: Node, cid: CID | None, memo: dict[CID, Any] | None = None) -> Any:
    if cid is None:
        return None
    if memo is not None and cid in memo:
        return memo[cid]
    try:
        record = node.load(cid)
    except (BlockNotFoundError, DecodeError):
        record = None
    if memo is not None:
        memo[cid] = record
    return record


def run_facts(
    node: Node, order: CID, bom: CID | None = None, *, memo: dict[CID, Any] | None = None
) -> RunFacts:
    """The facts of a run of ``order`` (and of its BOM, when it succeeded).

    ``memo`` (CID -> decoded record) lets a caller describing many runs decode each shared record
    (a Function used by a thousand runs) once.
    """
    verdict = node.catalog.verdict_for(bom) if bom is not None else None
    return _facts(node, order, bom, verdict, memo)


def run_facts_many(
    node: Node, runs: Sequence[tuple[CID, CID | None]], *, memo: dict[CID, Any] | None = None
) -> list[RunFacts]:
    """:func:`run_facts` of many ``(order, bom)`` runs, their verdicts read in one batched query.

    A walk over thousands of runs would otherwise pay one catalog statement per run.
    """
    verdicts = node.catalog.verdicts_for(bom for _, bom in runs if bom is not None)
    return [
        _facts(node, order, bom, verdicts.get(bom) if bom is not None else None, memo) for order, bom in runs
    ]


def _facts(
    node: Node, order: CID, bom: CID | None, verdict: VerdictRow | None, memo: dict[CID, Any] | None
) -> RunFacts:
    record = _load(node, bom, memo)
    bom_record = record if isinstance(record, BOMRecord) else None
    order_record = _load(node, order, memo)
    order_record = order_record if isinstance(order_record, OrderRecord) else None
    function = bom_record.function if bom_record else (order_record.function if order_record else None)
    fn = _load(node, function, memo)
    fn = fn if isinstance(fn, FunctionRecord) else None
    return RunFacts(
        function=function,
        function_name=fn.name if fn else "",
        code=fn.code if fn else None,
        issuer=bom_record.issuer if bom_record else None,
        params=dict(order_record.params) if order_record else {},
        seed=order_record.seed if order_record else None,
        verdict=verdict.verdict if verdict else None,
        verification=verdict.verification if verdict else None,
        verifications=verdict.count if verdict else 0,
    )


@dataclass(frozen=True)
class RunListing:
    """One line of ``cats ls``: the catalog's row and the run's facts."""

    row: RunRow
    facts: RunFacts


def list_runs(node: Node, limit: int | None = None) -> list[RunListing]:
    """Runs newest first (re-executions made by ``verify`` excluded), each with its facts."""
    return list(iter_runs(node, limit))


def iter_runs(node: Node, limit: int | None = None) -> Iterator[RunListing]:
    """:func:`list_runs` as it is read: one catalog page at a time, shared records decoded once.

    The memo of decoded records keeps only the Functions (shared by many runs): a catalog of
    millions of runs is listed in flat memory.
    """
    memo: dict[CID, Any] = {}
    for row in node.catalog.iter_runs(limit):
        facts = run_facts(node, row.order, row.bom, memo=memo)
        for cid in (row.order, row.bom):  # one run's own records: not worth keeping
            if cid is not None:
                memo.pop(cid, None)
        yield RunListing(row, facts)
