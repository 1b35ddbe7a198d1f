from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cats_runtime.cas import CID, _unixfs
from cats_runtime.errors import BlockNotFoundError, InvalidInputError
from cats_runtime.operations import Node, build_function, parse_input, parse_param, rebuild_catalog, run
from cats_runtime.records import BOMRecord, InvoiceRecord, OrderRecord

MakeFunction = Callable[..., str]

pytestmark = pytest.mark.usefixtures("ray_session")

UPPER = """
import json

def main(ctx):
    text = ctx.inputs["doc"].read_text()
    factor = ctx.params.get("repeat", 1)
    (ctx.output / "upper.txt").write_text(text.upper() * factor)
    meta = {"seed": ctx.seed, "params": dict(ctx.params)}
    (ctx.output / "meta.json").write_text(json.dumps(meta, sort_keys=True))
    print("hello from stdout")
    ctx.log.info("logged %d chars", len(text))
"""


def _read(node: Node, cid: CID) -> bytes:
    return b"".join(_unixfs.cat(node.store, cid))


def _add(node: Node, path: Path) -> CID:
    return _unixfs.add_path(path, node.store).cid


def test_batch_run_records_everything(node: Node, make_function: MakeFunction, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("hello\n")
    _, fn = build_function(make_function(UPPER), node.store)
    out = run(node, function=fn, inputs={"doc": _add(node, doc)}, params={"repeat": 2}, seed=7)
    assert out.status == "succeeded" and out.bom is not None and out.output is not None and not out.reused
    entries = {e.name: e.cid for e in _unixfs.ls(node.store, out.output)}
    assert _read(node, entries["upper.txt"]) == b"HELLO\nHELLO\n"
    assert json.loads(_read(node, entries["meta.json"])) == {"params": {"repeat": 2}, "seed": 7}
    bom = node.load(out.bom)
    assert isinstance(bom, BOMRecord)
    order = node.load(bom.order)
    assert isinstance(order, OrderRecord) and order.seed == 7 and dict(order.params) == {"repeat": 2}
    invoice = node.load(bom.invoice)
    assert (
        isinstance(invoice, InvoiceRecord) and invoice.status == "succeeded" and invoice.output == out.output
    )
    assert invoice.executor["ray"] and invoice.executor["cluster"]
    log = _read(node, invoice.log).decode() if invoice.log else ""
    assert "hello from stdout" in log and "logged 6 chars" in log
    assert bom.issuer is not None and bom.issuer.startswith("did:key:") and bom.signature is not None
    assert node.catalog.boms_for_order(bom.order) == [out.bom]
    assert node.catalog.producers(out.output) == [out.bom]
    assert out.bom in node.repo.pins
    # The same Order again: the BOM comes back at once, nothing runs.
    again = run(node, function=fn, inputs={"doc": _add(node, doc)}, params={"repeat": 2}, seed=7)
    assert again.reused and again.bom == out.bom
    forced = run(node, function=fn, inputs={"doc": _add(node, doc)}, params={"repeat": 2}, seed=7, force=True)
    assert not forced.reused and forced.output == out.output and forced.bom != out.bom


def test_code_comes_from_the_store_not_the_working_tree(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("x")
    spec = make_function("def main(ctx):\n    (ctx.output / 'v').write_text('one')\n")
    _, fn1 = build_function(spec, node.store)
    code_dir = Path(spec.split(":")[0])
    (code_dir / "fn.py").write_text("def main(ctx):\n    (ctx.output / 'v').write_text('two')\n")
    _, fn2 = build_function(spec, node.store)
    inputs = {"doc": _add(node, doc)}
    first = run(node, function=fn1, inputs=inputs)
    second = run(node, function=fn2, inputs=inputs)
    # Both versions ran in the same Ray workers; each got its own module.
    v1 = {e.name: e.cid for e in _unixfs.ls(node.store, first.output)}["v"]  # type: ignore[arg-type]
    v2 = {e.name: e.cid for e in _unixfs.ls(node.store, second.output)}["v"]  # type: ignore[arg-type]
    assert _read(node, v1) == b"one" and _read(node, v2) == b"two"


FAILS = """
def main(ctx):
    (ctx.output / "partial.txt").write_text("half done")
    print("about to fail")
    raise ValueError("bad row 42")
"""


def test_failing_function_gives_failed_invoice_and_no_bom(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("x")
    _, fn = build_function(make_function(FAILS), node.store)
    out = run(node, function=fn, inputs={"doc": _add(node, doc)})
    assert out.status == "failed" and out.bom is None and out.output is None
    assert out.error is not None and "ValueError: bad row 42" in out.error
    invoice = node.load(out.invoice)
    assert isinstance(invoice, InvoiceRecord) and invoice.status == "failed" and invoice.output is None
    log = _read(node, invoice.log).decode()  # type: ignore[arg-type]
    assert "about to fail" in log and "Traceback" in log and 'raise ValueError("bad row 42")' in log
    assert node.catalog.boms_for_order(invoice.order) == []
    assert node.catalog.invoices_for_order(invoice.order) == [out.invoice]
    runs = node.catalog.runs()
    assert runs[0].status == "failed" and runs[0].bom is None


READ_ONLY = """
import os, stat

def main(ctx):
    p = ctx.inputs["doc"]
    mode = stat.S_IMODE(os.stat(p).st_mode)
    (ctx.output / "mode").write_text(oct(mode & 0o222))
"""


def test_inputs_are_read_only(node: Node, make_function: MakeFunction, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("x")
    _, fn = build_function(make_function(READ_ONLY), node.store)
    out = run(node, function=fn, inputs={"doc": _add(node, doc)})
    mode = {e.name: e.cid for e in _unixfs.ls(node.store, out.output)}["mode"]  # type: ignore[arg-type]
    assert _read(node, mode) == b"0o0"


def test_several_inputs_and_chained_parents(node: Node, make_function: MakeFunction, tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text("a")
    b = tmp_path / "b.txt"
    b.write_text("b")
    join = make_function(
        "def main(ctx):\n"
        "    (ctx.output / 'j').write_text(''.join(ctx.inputs[k].read_text() for k in sorted(ctx.inputs)))\n"
    )
    _, fn = build_function(join, node.store)
    first = run(node, function=fn, inputs={"x": _add(node, a), "y": _add(node, b)})
    assert first.status == "succeeded"
    copy = make_function(
        "import shutil\n\ndef main(ctx):\n"
        "    shutil.copytree(ctx.inputs['up'], ctx.output, dirs_exist_ok=True)\n"
    )
    _, fn2 = build_function(copy, node.store)
    second = run(node, function=fn2, inputs={"up": first.output})  # type: ignore[dict-item]
    order = node.load(second.order)
    assert list(order.parents) == [first.bom]
    bom = node.load(second.bom)  # type: ignore[arg-type]
    assert list(bom.parents) == [first.bom]
    assert node.catalog.children(first.bom) == [second.bom]  # type: ignore[arg-type]


def test_param_and_input_parsing(node: Node, tmp_path: Path) -> None:
    assert parse_param("n=3") == ("n", 3)
    assert parse_param("xs=[1, 2.5]") == ("xs", [1, 2.5])
    assert parse_param("name=alice") == ("name", "alice")
    assert parse_param("flag=true") == ("flag", True)
    with pytest.raises(InvalidInputError, match="key=value"):
        parse_param("novalue")
    with pytest.raises(InvalidInputError, match="finite"):
        parse_param("x=NaN")
    with pytest.raises(InvalidInputError, match="CID or an existing path"):
        parse_input(node, "doc=./does/not/exist")
    with pytest.raises(InvalidInputError, match="input name"):
        parse_input(node, "../x=abc")
    missing = CID.compute(b"never stored")
    with pytest.raises(BlockNotFoundError, match="not in the store"):
        parse_input(node, f"doc={missing}")
    f = tmp_path / "f.txt"
    f.write_text("data")
    name, cid = parse_input(node, f"doc={f}")
    assert name == "doc" and node.store.has(cid) and cid in node.repo.pins


def test_catalog_rebuild_recreates_rows(node: Node, make_function: MakeFunction, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("hello\n")
    _, fn = build_function(make_function(UPPER), node.store)
    ok = run(node, function=fn, inputs={"doc": _add(node, doc)})
    _, bad = build_function(make_function(FAILS), node.store)
    run(node, function=bad, inputs={"doc": _add(node, doc)})
    before = node.catalog.counts()
    node.catalog.path.unlink()
    node.close()
    with Node.open(node.home) as fresh:
        assert fresh.catalog.counts()["boms"] == 0
        stats = rebuild_catalog(fresh)
        assert stats.by_type["cats/bom@1"] == 1 and stats.by_type["cats/invoice@1"] == 2
        after = fresh.catalog.counts()
        assert {k: v for k, v in after.items() if k != "records"} == {
            k: v for k, v in before.items() if k != "records"
        }
        assert fresh.catalog.producers(ok.output) == [ok.bom]  # type: ignore[arg-type]


def test_interrupted_run_leaves_catalog_consistent(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"{i}.txt").write_text(str(i))
    _, fn = build_function(
        make_function("def main(ctx):\n    (ctx.output / ctx.datum.name).write_text('x')\n"),
        node.store,
        mode="map",
    )

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(node, function=fn, inputs={"docs": _add(node, docs)}, on_progress=interrupt)
    counts = node.catalog.counts()
    assert counts["invoices"] == 0 and counts["boms"] == 0 and counts["memo"] == 0
    out = run(node, function=fn, inputs={"docs": _add(node, docs)})
    assert out.status == "succeeded"
