from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from block_faults import tamper

from cats_runtime.cas import Block, _unixfs
from cats_runtime.cas._car import export_car
from cats_runtime.errors import BlockNotFoundError, IntegrityError, RecordError, VerificationError
from cats_runtime.operations import (
    Node,
    build_function,
    lineage,
    render_lineage,
    run,
    verify,
    verify_structural,
)
from cats_runtime.records import VerificationRecord

MakeFunction = Callable[..., str]
pytestmark = pytest.mark.usefixtures("ray_session")

STABLE = """
import random

def main(ctx):
    rng = random.Random(ctx.seed)
    (ctx.output / "sample.txt").write_text(" ".join(str(rng.randint(0, 99)) for _ in range(5)))
    (ctx.output / "copy.txt").write_text(ctx.inputs["doc"].read_text())
"""

UNSTABLE = """
import os

def main(ctx):
    (ctx.output / "noise.bin").write_bytes(os.urandom(8))
    (ctx.output / "copy.txt").write_text(ctx.inputs["doc"].read_text())
"""


def _doc(node: Node, tmp_path: Path) -> dict[str, object]:
    doc = tmp_path / "doc.txt"
    doc.write_text("content\n")
    return {"doc": _unixfs.add_path(doc, node.store).cid}


def test_verify_match_and_structural(node: Node, make_function: MakeFunction, tmp_path: Path) -> None:
    _, fn = build_function(make_function(STABLE), node.store)
    out = run(node, function=fn, inputs=_doc(node, tmp_path), seed=3)  # type: ignore[arg-type]
    assert out.bom is not None
    result = verify(node, out.bom)
    assert result.verdict == "match" and result.found == out.output and result.differences == []
    record = node.load(result.verification)
    assert isinstance(record, VerificationRecord) and record.verdict == "match"
    assert node.catalog.verifications_for(out.bom) == [result.verification]
    assert [r.invoice for r in node.catalog.runs()] == [out.invoice]  # re-executions are not listed as runs
    report = verify_structural(node, out.bom)
    # BOM, order, invoice, function, structure, code dir + file, input, output dir + 2 files, log.
    assert report.blocks >= 11 and report.records == 5 and report.signed


def test_nondeterministic_function_is_caught(node: Node, make_function: MakeFunction, tmp_path: Path) -> None:
    _, fn = build_function(make_function(UNSTABLE), node.store)
    out = run(node, function=fn, inputs=_doc(node, tmp_path))  # type: ignore[arg-type]
    result = verify(node, out.bom)  # type: ignore[arg-type]
    assert result.verdict == "mismatch"
    assert result.differences == ["changed: noise.bin"]


def test_structural_detects_missing_and_corrupt_blocks(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    _, fn = build_function(make_function(STABLE), node.store)
    out = run(node, function=fn, inputs=_doc(node, tmp_path))  # type: ignore[arg-type]
    assert out.bom is not None and out.output is not None
    sample = {e.name: e.cid for e in _unixfs.ls(node.store, out.output)}["sample.txt"]
    original = node.repo.blocks.get(sample)
    tamper(node.repo.blocks, sample, b"tampered")
    with pytest.raises(IntegrityError, match=str(sample)):
        verify_structural(node, out.bom)
    node.repo.blocks.delete(sample)
    with pytest.raises(BlockNotFoundError, match=f"block {sample} .*linked from {out.output}"):
        verify_structural(node, out.bom)
    node.repo.blocks.put(Block.encode(original, sample.codec, version=sample.version))
    assert verify_structural(node, out.bom).blocks > 0
    with pytest.raises(RecordError, match="cats/bom"):
        verify_structural(node, out.invoice)


def test_tampered_bom_signature_fails_structural(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    import dataclasses

    _, fn = build_function(make_function(STABLE), node.store)
    out = run(node, function=fn, inputs=_doc(node, tmp_path))  # type: ignore[arg-type]
    bom = node.load(out.bom)  # type: ignore[arg-type]
    forged = dataclasses.replace(bom, signature=bytes(64))
    block = forged.to_block()
    node.store.put(block)
    with pytest.raises(VerificationError, match="signature"):
        verify_structural(node, block.cid)


def test_lineage_of_a_chain(node: Node, make_function: MakeFunction, tmp_path: Path) -> None:
    _, fn = build_function(make_function(STABLE), node.store)
    first = run(node, function=fn, inputs=_doc(node, tmp_path))  # type: ignore[arg-type]
    copy = make_function(
        "import shutil\n\ndef main(ctx):\n"
        # Inputs are read-only (0444/0555) and the sandbox's uid is not root: copy the bytes,
        # not the modes, or the output directory itself would become read-only.
        "    for f in ctx.inputs['up'].iterdir():\n"
        "        shutil.copyfile(f, ctx.output / f.name)\n"
        "    (ctx.output / 'note.txt').write_text('copied')\n",
    )
    _, fn2 = build_function(copy, node.store, name="copier")
    second = run(node, function=fn2, inputs={"up": first.output})  # type: ignore[dict-item]
    assert first.bom and second.bom and first.output and second.output
    g = lineage(node, second.bom)
    assert {n.kind for n in g.nodes.values()} == {"bom", "data"}
    assert first.bom in g.nodes and second.bom in g.nodes
    text = render_lineage(g, "text")
    # Names come with the tail of the Function's CID, so two functions named alike differ.
    assert f"made by main …{str(fn)[-6:]} BOM {first.bom}" in text and "input up =" in text
    down = render_lineage(lineage(node, first.bom), "text")
    assert f"used by copier …{str(fn2)[-6:]} BOM {second.bom}" in down
    from_data = lineage(node, first.output)
    assert set(from_data.producers_of(first.output)) == {first.bom}
    assert set(from_data.consumers_of(first.output)) == {second.bom}
    dot = render_lineage(g, "dot")
    assert dot.startswith("digraph lineage {") and "->" in dot
    assert render_lineage(g, "mermaid").startswith("graph LR")
    assert '"root"' in render_lineage(g, "json")


def test_same_order_in_a_fresh_process_gives_the_same_output(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    """Determinism across processes and stores: ship the BOM as a CAR, re-execute elsewhere."""
    _, fn = build_function(make_function(STABLE), node.store)
    out = run(node, function=fn, inputs=_doc(node, tmp_path), params={"k": [1, 2]}, seed=11)  # type: ignore[arg-type]
    assert out.bom is not None
    car = tmp_path / "bom.car"
    with car.open("wb") as f:
        export_car(node.store, [out.bom], f)
    other = tmp_path / "other-home"
    env = {**os.environ, "CATS_HOME": str(other)}
    cats = [sys.executable, "-c", "from cats_runtime.cli import main; main()"]
    subprocess.run([*cats, "car", "import", str(car)], env=env, check=True, capture_output=True, timeout=300)
    done = subprocess.run(
        [*cats, "verify", str(out.bom), "--json"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert '"verdict": "match"' in done.stdout and str(out.output) in done.stdout


def test_verify_refuses_a_bom_whose_signature_does_not_verify(
    node: Node, make_function: MakeFunction, tmp_path: Path
) -> None:
    _, fn = build_function(make_function(STABLE), node.store)
    out = run(node, function=fn, inputs=_doc(node, tmp_path), seed=3)  # type: ignore[arg-type]
    assert out.bom is not None
    bom = node.load(out.bom)
    assert bom.issuer is not None and bom.signature is not None
    forged = bom.with_signature(bom.issuer, bytes(64))
    block = forged.to_block()
    node.store.put(block)
    with pytest.raises(VerificationError, match="does not verify"):
        verify(node, block.cid)
    assert node.catalog.verifications_for(block.cid) == [], "nothing may be recorded for a forged BOM"


def test_loading_a_non_record_names_the_codec(node: Node, tmp_path: Path) -> None:
    doc = tmp_path / "plain.txt"
    doc.write_text("not a record")
    cid = _unixfs.add_path(doc, node.store).cid
    with pytest.raises(RecordError, match=r"expected a CATs record .* found a raw block"):
        node.load(cid)
