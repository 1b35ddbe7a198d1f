"""Forged, unsigned BOMs that `verify_structural` must refuse: each cross-check has its own case.

Every block a forged BOM links is present and intact, so re-hashing alone finds nothing: only
the checks that the BOM agrees with its Order and Invoice can catch these. Nothing runs on Ray.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from program_locks import write_small_lock

from cats_runtime.cas import CID, _unixfs
from cats_runtime.errors import VerificationError
from cats_runtime.operations import Node, build_function, build_structure, store_structure, verify_structural
from cats_runtime.operations._structure import local_structure
from cats_runtime.records import BOMRecord, InvoiceRecord, OrderRecord

MakeFunction = Callable[..., str]


@dataclasses.dataclass
class Genuine:
    bom: BOMRecord
    other_data: CID
    other_function: CID
    other_structure: CID


def _put(node: Node, *records: object) -> None:
    for record in records:
        node.store.put(record.to_block())  # type: ignore[attr-defined]


@pytest.fixture
def genuine(node: Node, make_function: MakeFunction, tmp_path: Path) -> Genuine:
    """A consistent, unsigned BOM built by hand, and stored things a forger could swap in."""
    _, fn = build_function(make_function("def main(ctx):\n    pass\n"), node.store)
    _, other_fn = build_function(make_function("def other(ctx):\n    pass\n", "other"), node.store)
    structure = store_structure(local_structure(), node.store)
    prog = tmp_path / "prog"
    (prog / "stacks").mkdir(parents=True)
    (prog / "Pulumi.yaml").write_text("name: node\nruntime: python\nstackConfigDir: stacks\n")
    (prog / "__main__.py").write_text("")
    (prog / "stacks" / "Pulumi.acme.yaml").write_text("config:\n  cats:cloud: existing\n")
    write_small_lock(prog)
    other_structure = store_structure(build_structure(prog, "acme", node.store), node.store)
    data = _unixfs.add_bytes(b"input", node.store)
    other_data = _unixfs.add_bytes(b"other", node.store)
    output = _unixfs.add_bytes(b"output", node.store)
    order = OrderRecord(function=fn, structure=structure, inputs={"doc": data}, params={"n": 1}, seed=0)
    invoice = InvoiceRecord(
        order=order.cid, status="succeeded", output=output, started_ms=1, finished_ms=2, error=None
    )
    bom = BOMRecord(
        order=order.cid,
        invoice=invoice.cid,
        function=fn,
        structure=structure,
        inputs={"doc": data},
        output=output,
        parents=[],
    )
    _put(node, order, invoice, bom)
    return Genuine(bom, other_data, other_fn, other_structure)


def _forge(node: Node, bom: BOMRecord, **changes: object) -> CID:
    forged = dataclasses.replace(bom, **changes)  # type: ignore[arg-type]
    _put(node, forged)
    return forged.cid


def test_the_genuine_unsigned_bom_is_intact(node: Node, genuine: Genuine) -> None:
    report = verify_structural(node, genuine.bom.cid)
    assert report.records == 5 and not report.signed


def test_an_output_other_than_the_invoices_is_refused(node: Node, genuine: Genuine) -> None:
    forged = _forge(node, genuine.bom, output=genuine.other_data)
    with pytest.raises(VerificationError, match=rf"output {genuine.other_data} but its invoice says"):
        verify_structural(node, forged)


def test_a_function_other_than_the_orders_is_refused(node: Node, genuine: Genuine) -> None:
    forged = _forge(node, genuine.bom, function=genuine.other_function)
    with pytest.raises(VerificationError, match=r"field 'function' differs from its order's"):
        verify_structural(node, forged)


def test_a_structure_other_than_the_orders_is_refused(node: Node, genuine: Genuine) -> None:
    # The forger claims the run happened on another Plant than the one the Order named.
    forged = _forge(node, genuine.bom, structure=genuine.other_structure)
    with pytest.raises(VerificationError, match=r"field 'structure' differs from its order's"):
        verify_structural(node, forged)


def test_inputs_other_than_the_orders_are_refused(node: Node, genuine: Genuine) -> None:
    forged = _forge(node, genuine.bom, inputs={"doc": genuine.other_data})
    with pytest.raises(VerificationError, match=r"field 'inputs' differs from its order's"):
        verify_structural(node, forged)


def test_parents_other_than_the_orders_are_refused(node: Node, genuine: Genuine) -> None:
    # A forged lineage: the BOM claims to build on another (stored, intact) BOM.
    forged = _forge(node, genuine.bom, parents=[genuine.bom.cid])
    with pytest.raises(VerificationError, match=r"field 'parents' differs from its order's"):
        verify_structural(node, forged)
