from __future__ import annotations

from pathlib import Path

import pytest

from cats_runtime.cas import CID
from cats_runtime.records import Catalog, OrderRecord, StructureRecord, memo_key

F = CID.compute(b"function", 0x71)
D = CID.compute(b"datum")
S = CID.compute(b"side")


def test_memo_key_covers_everything_that_determines_an_output() -> None:
    base = memo_key(F, {"a": 1}, 0, "in", "x.txt", D, {"side": S})
    variants = [
        memo_key(CID.compute(b"other", 0x71), {"a": 1}, 0, "in", "x.txt", D, {"side": S}),
        memo_key(F, {"a": 2}, 0, "in", "x.txt", D, {"side": S}),
        memo_key(F, {"a": 1}, 1, "in", "x.txt", D, {"side": S}),
        memo_key(F, {"a": 1}, 0, "in2", "x.txt", D, {"side": S}),
        memo_key(F, {"a": 1}, 0, "in", "y.txt", D, {"side": S}),
        memo_key(F, {"a": 1}, 0, "in", "x.txt", CID.compute(b"d2"), {"side": S}),
        memo_key(F, {"a": 1}, 0, "in", "x.txt", D, {}),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert memo_key(F, {"a": 1}, 0, "in", "x.txt", D, {"side": S}) == base


def test_transaction_rolls_back_on_interrupt(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite")
    structure = StructureRecord(cloud="local", stack="local", program=None, outputs=[])
    order = OrderRecord(
        function=F, structure=structure.to_block().cid, inputs={"in": D}, params={}, seed=0, parents=[]
    )

    def interrupted() -> None:
        with catalog.transaction() as db:
            db.execute("INSERT INTO records(cid, type, indexed_ms) VALUES ('x', 'cats/x@1', 0)")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert catalog.counts()["records"] == 0
    catalog.index([(order.to_block().cid, order)], [("k", F, D, S, S)])
    assert catalog.memo_get("k") == S and catalog.memo_get_many(["k", "nope"]) == {"k": S}
    assert catalog.counts()["order_inputs"] == 1
    assert catalog.record_type(order.to_block().cid) == "cats/order@1"
    catalog.close()
    # WAL mode: readers never block the one writer of a run.
    reopened = Catalog(tmp_path / "c.sqlite")
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_unusable_catalog_path_is_a_store_error(tmp_path: Path) -> None:
    from cats_runtime.errors import StoreError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open the catalog"):
        Catalog(blocker / "c.sqlite")


def test_the_worst_verdict_stands_and_survives_a_rebuild(tmp_path: Path) -> None:
    from cats_runtime.cas import DAG_PB, MemoryBlockStore
    from cats_runtime.records import InvoiceRecord, VerificationRecord

    bom = CID.compute(b"bom", 0x71)
    out = CID.compute(b"out", DAG_PB)
    store = MemoryBlockStore()
    records: list[tuple[CID, object]] = []

    def verification(verdict: str, found: CID | None, finished: int) -> CID:
        invoice = InvoiceRecord(
            order=F,
            status="succeeded" if found else "failed",
            output=found,
            started_ms=finished,
            finished_ms=finished,
            error=None if found else "boom",
        )
        record = VerificationRecord(
            bom=bom,
            invoice=invoice.cid,
            verdict=verdict,
            expected=out,
            found=found,
            structure=F,  # type: ignore[arg-type]
        )
        for r in (invoice, record):
            store.put(r.to_block())
            records.append((r.cid, r))
        return record.cid

    catalog = Catalog(tmp_path / "c.sqlite")
    assert catalog.verdict_for(bom) is None
    first_match = verification("match", out, 1)
    catalog.index(records)
    row = catalog.verdict_for(bom)
    assert row is not None and (row.verdict, row.verification, row.count) == ("match", first_match, 1)
    mismatch = verification("mismatch", CID.compute(b"other", DAG_PB), 2)
    verification("error", None, 3)
    later_match = verification("match", out, 4)
    catalog.index(records)
    for _ in range(2):  # the index, then the index rebuilt from the blocks alone
        row = catalog.verdict_for(bom)
        assert row is not None and (row.verdict, row.verification, row.count) == ("mismatch", mismatch, 4)
        catalog.rebuild(store, list(store))
    assert later_match != mismatch
    catalog.close()


def test_rebuild_streams_records_into_the_catalog(tmp_path: Path) -> None:
    """Each record is indexed before the next block is read (memory stays flat whatever the store
    holds): the source is asked for block k+1 only after record k reached the transaction."""
    from cats_runtime.cas import MemoryBlockStore

    structure = StructureRecord(cloud="local", stack="local", program=None, outputs=[])
    store = MemoryBlockStore()
    cids = []
    for i in range(50):
        order = OrderRecord(
            function=F,
            structure=structure.to_block().cid,
            inputs={"in": D},
            params={"i": i},
            seed=0,
            parents=[],
        )
        block = order.to_block()
        store.put(block)
        cids.append(block.cid)
    catalog = Catalog(tmp_path / "c.sqlite")
    seen_rows: list[int] = []

    def scan() -> object:
        for cid in cids:
            # The rebuild's own connection (inside its transaction) sees the rows written so far.
            seen_rows.append(catalog._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
            yield cid

    stats = catalog.rebuild(store, scan())  # type: ignore[arg-type]
    assert stats.records == 50
    assert seen_rows == list(range(50))
    assert catalog.counts()["records"] == 50
    catalog.close()


def test_runs_are_read_a_page_at_a_time_in_order(tmp_path: Path) -> None:
    """Paging keyed on (finished, cid): every run once, newest first, equal times included."""
    from cats_runtime.records import InvoiceRecord

    structure = StructureRecord(cloud="local", stack="local", program=None, outputs=[])
    catalog = Catalog(tmp_path / "c.sqlite")
    records = []
    for i in range(23):
        order = OrderRecord(
            function=F,
            structure=structure.to_block().cid,
            inputs={"in": D},
            params={"i": i},
            seed=0,
            parents=[],
        )
        invoice = InvoiceRecord(
            order=order.to_block().cid,
            status="failed",
            output=None,
            started_ms=0,
            finished_ms=1000 + i // 4,  # runs of four share a finishing time
            executor={},
            data=[],
            error="x",
            log=None,
        )
        records += [(order.to_block().cid, order), (invoice.to_block().cid, invoice)]
    catalog.index(records)
    whole = catalog.runs()
    assert len(whole) == 23
    assert list(catalog.iter_runs(page=3)) == whole  # pages of 3 across the ties
    assert list(catalog.iter_runs(10, page=4)) == whole[:10]
    assert [r.finished_ms for r in whole] == sorted((r.finished_ms for r in whole), reverse=True)
    catalog.close()


def test_batched_neighbour_queries_equal_one_query_per_key(tmp_path: Path) -> None:
    """``producers_many``, ``consumers_many`` and ``verdicts_for`` answer what the one-key queries
    answer, for more keys than one statement takes (they are sent in chunks)."""
    from cats_runtime.records import BOMRecord, InvoiceRecord, VerificationRecord

    structure = StructureRecord(cloud="local", stack="local", program=None, outputs=[]).to_block().cid
    datas = [CID.compute(f"data {i}".encode()) for i in range(1200)]
    records: list[tuple[CID, object]] = []
    boms = []
    for i in range(1300):
        # Run i reads data i % 1200 (and data 0, under a second name, when i is even) and writes
        # data (7 i) % 1200: most data have several consumers and producers, some have none.
        inputs = {"in": datas[i % 1200], **({"zero": datas[0]} if i % 2 == 0 else {})}
        bom = BOMRecord(
            order=CID.compute(f"order {i}".encode(), 0x71),
            invoice=CID.compute(f"invoice {i}".encode(), 0x71),
            function=F,
            structure=structure,
            inputs=inputs,
            output=datas[(7 * i) % 1200] if i % 3 else CID.compute(f"fresh {i}".encode()),
        )
        records.append((bom.cid, bom))
        boms.append(bom)
    for k, bom in enumerate(boms[::50]):
        invoice = InvoiceRecord(
            order=bom.order, status="succeeded", output=bom.output, started_ms=k, finished_ms=k
        )
        verdict = "match" if k % 3 else "mismatch"
        found = bom.output if verdict == "match" else CID.compute(b"other")
        check = VerificationRecord(
            bom=bom.cid,
            invoice=invoice.cid,
            verdict=verdict,
            expected=bom.output,
            found=found,
            structure=structure,
        )
        records.extend([(invoice.cid, invoice), (check.cid, check)])
    catalog = Catalog(tmp_path / "c.sqlite")
    catalog.index(records)
    keys = [*datas, CID.compute(b"unknown")]
    producers, consumers = catalog.producers_many(keys), catalog.consumers_many(keys)
    assert producers == {k: catalog.producers(k) for k in keys}
    assert consumers == {k: catalog.consumers(k) for k in keys}
    assert len(consumers[datas[0]]) > 600 and producers[keys[-1]] == [] and consumers[keys[-1]] == []
    bom_cids = [b.cid for b in boms]
    verdicts = catalog.verdicts_for(bom_cids)
    expected = {b: catalog.verdict_for(b) for b in bom_cids}
    assert verdicts == {b: v for b, v in expected.items() if v is not None}
    assert len(verdicts) == 26 and {v.verdict for v in verdicts.values()} == {"match", "mismatch"}
    assert catalog.producers_many([]) == {} and catalog.verdicts_for([]) == {}
    catalog.close()
