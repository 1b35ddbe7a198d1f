"""Many CATs runs, made directly through the records API (fast enough for 100k in a test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cats_runtime.cas import CID, Block
from cats_runtime.cas._cid import DAG_PB, RAW
from cats_runtime.records import (
    BOMRecord,
    DatumResult,
    FunctionRecord,
    InvoiceRecord,
    OrderRecord,
    StructureRecord,
)


def run_records(count: int) -> Iterator[tuple[Block, Any]]:
    """Blocks and records of ``count`` succeeded runs of one Function.

    Function and Structure come first, then Order, Invoice and BOM per run (all distinct,
    finishing one millisecond apart).
    """
    function = FunctionRecord(
        name="scale", code=CID.compute(b"code", DAG_PB), entrypoint="m:f", mode="map", python="3.11"
    )
    structure = StructureRecord(cloud="local", stack="local", program=None, outputs=[])
    yield function.to_block(), function
    yield structure.to_block(), structure
    for i in range(count):
        datum = CID.compute(f"datum {i}".encode(), RAW)
        output = CID.compute(f"output {i}".encode(), RAW)
        order = OrderRecord(
            function=function.cid,
            structure=structure.cid,
            inputs={"in": datum},
            params={"i": i},
            seed=0,
            parents=[],
        )
        result = DatumResult(
            input="in", name="x", cid=datum, output=output, status="succeeded", memoized=False
        )
        invoice = InvoiceRecord(
            order=order.cid,
            status="succeeded",
            output=output,
            data=[result],
            executor={},
            started_ms=1_700_000_000_000 + i,
            finished_ms=1_700_000_000_001 + i,
        )
        bom = BOMRecord(
            order=order.cid,
            invoice=invoice.cid,
            function=function.cid,
            structure=structure.cid,
            inputs=order.inputs,
            output=output,
        )
        for record in (order, invoice, bom):
            yield record.to_block(), record
