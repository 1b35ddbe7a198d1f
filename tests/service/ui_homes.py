"""A node home filled with records built by hand (no Ray): a peer's signed run, this node's run
built on it, a verification, a failed run, and hostile text everywhere a record carries text.

Used by the page tests: what the browser shows must be this text, escaped, never markup.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cats_runtime.cas import CID, add_bytes, add_path
from cats_runtime.operations import Node, NodeIdentity, local_structure, sign_bom, store_structure
from cats_runtime.records import (
    BOMRecord,
    DatumResult,
    FunctionRecord,
    InvoiceRecord,
    OrderRecord,
    VerificationRecord,
)

XSS_NAME = '<script>window.pwned=1</script>"clean'
XSS_PARAM = '<img src=x onerror="window.pwned=2">'
XSS_LOG = "step 1\n</pre><script>window.pwned=3</script>\ndone\n"
XSS_ERROR = "ValueError: could not convert '<b onmouseover=\"window.pwned=4\">hot</b>'"
XSS_FILE = "<svg onload=alert(5)>.txt"
TEXT = "station,temp_c\noslo,4.5\n<lisbon>&,18.0\n"


@dataclass(frozen=True)
class UiHome:
    """What :func:`build_home` made."""

    home: Path
    own_did: str
    peer_did: str
    peer_bom: CID
    own_bom: CID
    peer_output: CID
    own_output: CID
    failed_invoice: CID
    verification: CID
    code: CID
    forged_bom: CID


def _code(tmp: Path, name: str) -> Path:
    code = tmp / name
    code.mkdir(parents=True)
    (code / "fn.py").write_text("def main(ctx):\n    pass\n")
    return code


def build_home(tmp: Path) -> UiHome:
    """Build the home at ``tmp / "node"`` (and a peer identity at ``tmp / "peer"``)."""
    home = tmp / "node"
    peer = NodeIdentity.load_or_create(tmp / "peer")
    out_dir = tmp / "peer-out"
    (out_dir / "sub").mkdir(parents=True)
    (out_dir / "stations.csv").write_text(TEXT)
    (out_dir / XSS_FILE).write_text("<script>window.pwned=6</script>\n")
    (out_dir / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (out_dir / "big.txt").write_text("x" * (70 * 1024))
    (out_dir / "sub" / "note.txt").write_text("nested note\n")
    with Node.open(home) as node:
        store = node.store
        structure = store_structure(local_structure(), store)
        code = add_path(_code(tmp, "code"), store).cid
        fn = FunctionRecord(name=XSS_NAME, code=code, entrypoint="fn:main", mode="map", python="3.11")
        fn_cid = _put(node, fn)
        raw = add_bytes(b"raw readings\n", store)
        peer_out = add_path(out_dir, store).cid
        peer_bom, _ = _run(
            node, fn_cid, structure, {"readings": raw}, peer_out, {"threshold": XSS_PARAM}, 7, [], peer
        )
        own_out = add_bytes(b"summary\n", store)
        summarize = _put(
            node,
            FunctionRecord(name="summarize", code=code, entrypoint="fn:main", mode="batch", python="3.11"),
        )
        own_bom, _ = _run(node, summarize, structure, {"clean": peer_out}, own_out, {}, 0, [peer_bom], None)
        failed = _failed(node, summarize, structure, raw)
        verification = _verify(node, peer_bom, peer_out, structure)
        # The peer's signature over a BOM whose output was swapped afterwards: must show invalid.
        forged = _put(node, dataclasses.replace(node.load(peer_bom), output=own_out))
        return UiHome(
            home,
            node.identity.did,
            peer.did,
            peer_bom,
            own_bom,
            peer_out,
            own_out,
            failed,
            verification,
            code,
            forged,
        )


def _put(node: Node, record: object) -> CID:
    block = record.to_block()  # type: ignore[attr-defined]
    node.store.put(block)
    node.catalog.index([(block.cid, record)])
    cid: CID = block.cid
    return cid


def _run(
    node: Node,
    function: CID,
    structure: CID,
    inputs: dict[str, CID],
    output: CID,
    params: dict[str, object],
    seed: int,
    parents: list[CID],
    signer: NodeIdentity | None,
) -> tuple[CID, CID]:
    order = _put(
        node,
        OrderRecord(
            function=function, structure=structure, inputs=inputs, params=params, seed=seed, parents=parents
        ),
    )
    log = add_bytes(XSS_LOG.encode(), node.store)
    name, data = next(iter(inputs.items()))
    invoice = _put(
        node,
        InvoiceRecord(
            order=order,
            status="succeeded",
            output=output,
            data=[DatumResult(input=name, name="d", cid=data, output=output, status="succeeded")],
            log=log,
            executor={"cats": "test", "driver": "<host>"},
            started_ms=1_780_000_000_000 + seed,
            finished_ms=1_780_000_004_000 + seed,
        ),
    )
    bom = BOMRecord(
        order=order,
        invoice=invoice,
        function=function,
        structure=structure,
        inputs=inputs,
        output=output,
        parents=parents,
    )
    signed = sign_bom(bom, signer) if signer is not None else node.sign(bom)
    return _put(node, signed), invoice


def _failed(node: Node, function: CID, structure: CID, data: CID) -> CID:
    order = _put(node, OrderRecord(function=function, structure=structure, inputs={"clean": data}, seed=99))
    return _put(
        node,
        InvoiceRecord(
            order=order,
            status="failed",
            data=[
                DatumResult(input="clean", name="d", cid=data, output=None, status="failed", error=XSS_ERROR)
            ],
            log=add_bytes(XSS_LOG.encode(), node.store),
            started_ms=1_780_000_100_000,
            finished_ms=1_780_000_101_000,
            error=XSS_ERROR,
        ),
    )


def _verify(node: Node, bom: CID, output: CID, structure: CID) -> CID:
    record = node.load(bom)
    again = _put(
        node,
        InvoiceRecord(
            order=record.order,
            status="succeeded",
            output=output,
            started_ms=1_780_000_200_000,
            finished_ms=1_780_000_203_000,
        ),
    )
    return _put(
        node,
        VerificationRecord(
            bom=bom, invoice=again, verdict="match", expected=output, found=output, structure=structure
        ),
    )
