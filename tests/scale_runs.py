"""Synthetic runs and a memory sampler for the scale tests and ``benchmarks/bench_scale.py``.

The records are real (an Order, an Invoice and a BOM per run, as ``cats run`` stores them) but
built without executing anything, so 100k runs take seconds to build. Shared by the tests
(``tests/scale/``) and the benchmark, which puts this directory on its path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from cats_runtime.cas import CID, Block, Repo, add_directory
from cats_runtime.cas._cid import RAW
from cats_runtime.records import (
    BOMRecord,
    DatumResult,
    FunctionRecord,
    InvoiceRecord,
    OrderRecord,
    StructureRecord,
)

__all__ = ["AnonPeak", "anon_mb", "put_batched", "run_blocks", "runs", "scale_function"]


def anon_mb() -> float:
    """This process's anonymous resident memory (RssAnon: heap and stacks, no mapped files), MB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) / 1024


class AnonPeak:
    """Samples :func:`anon_mb` every 5 ms in a thread: the kernel keeps no peak of RssAnon.

    VmHWM also counts the pages of files mapped while reading (the LMDB store is one memory
    map): page cache the kernel takes back under pressure, growing with what was read, not with
    what the process holds. The heap is what must stay flat.
    """

    def __init__(self) -> None:
        self.peak = anon_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, anon_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, anon_mb())


def scale_function() -> FunctionRecord:
    # Its code is the empty UnixFS directory, so a DAG walk through it finds every block.
    code = add_directory([], None).cid
    return FunctionRecord(name="scale", code=code, entrypoint="m:f", mode="map", python="3.11")


def runs(count: int, *, fan_out_of: BOMRecord | None = None) -> Iterator[Block]:
    """Blocks of ``count`` succeeded runs of one Function (output, Order, Invoice, BOM each).

    With ``fan_out_of``, every run consumes that BOM's output and names it as its parent.
    """
    function = scale_function()
    structure = StructureRecord(cloud="local", stack="local", program=None, outputs=[])
    yield function.to_block()
    yield structure.to_block()
    for i in range(count):
        datum = fan_out_of.output if fan_out_of else CID.compute(f"datum {i}".encode(), RAW)
        yield from run_blocks(function, structure, i, datum, [fan_out_of.cid] if fan_out_of else [])


def run_blocks(
    function: FunctionRecord, structure: StructureRecord, i: int, datum: CID, parents: list[CID]
) -> list[Block]:
    """Output, Order, Invoice and BOM of run ``i`` consuming ``datum`` (the BOM last)."""
    output_block = Block.encode(f"output {i} {datum}".encode())
    output = output_block.cid
    order = OrderRecord(
        function=function.cid,
        structure=structure.cid,
        inputs={"in": datum},
        params={"i": i},
        seed=i + 1,  # distinct per run (the root, i = -1, has 0): facts must come from the Order
        parents=parents,
    )
    result = DatumResult(input="in", name="x", cid=datum, output=output, status="succeeded", memoized=False)
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
        parents=parents,
    )
    return [output_block, order.to_block(), invoice.to_block(), bom.to_block()]


def put_batched(repo: Repo, blocks: Iterator[Block], batch_size: int = 1_000) -> int:
    """Store ``blocks`` in batches of ``batch_size``; returns how many."""
    n = 0
    batch: list[Block] = []
    for block in blocks:
        batch.append(block)
        if len(batch) >= batch_size:
            repo.blocks.put_many(batch)
            n += len(batch)
            batch = []
    repo.blocks.put_many(batch)
    return n + len(batch)
