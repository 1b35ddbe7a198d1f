"""Every input an Order imports from a path records the UnixFS profile it was imported with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cats_runtime.cas import CID, DAG_CBOR, add_path, get_profile
from cats_runtime.errors import RecordError
from cats_runtime.operations import Node, build_function, import_input
from cats_runtime.operations._run import make_order
from cats_runtime.records import OrderRecord

FUNCTION = CID.compute(b"function", DAG_CBOR)  # make_order only needs record links here
STRUCTURE = CID.compute(b"structure", DAG_CBOR)


def test_a_path_input_records_its_profile_and_the_cid_can_be_re_derived(node: Node, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(os.urandom(1_300_000))
    (data / ".cache").write_text("skipped")
    parsed = import_input(node, f"data={data}", profile=get_profile("unixfs-v1-2025"))
    given = import_input(node, f"again={parsed.cid}")
    assert parsed.skipped_hidden == 1 and given.imported is None
    assert parsed.imported is not None
    code = tmp_path / "fn"
    code.mkdir()
    (code / "main.py").write_text("def main(ctx):\n    pass\n")
    _, function = build_function(f"{code}:main:main", node.store)  # make_order reads its params
    _, cid = make_order(
        node,
        function,
        {"data": parsed.cid, "again": given.cid},
        {},
        0,
        STRUCTURE,
        {"data": parsed.imported},
    )
    order = OrderRecord.decode(node.store.get(cid))  # from the stored bytes, strictly
    assert list(order.imports) == ["data"]
    recorded = order.imports["data"]
    assert (recorded.profile, recorded.chunker, recorded.max_links, recorded.hamt_strategy) == (
        "unixfs-v1-2025",
        "size-1048576",
        1024,
        "block-bytes",
    )
    assert recorded.cid_version == 1 and recorded.raw_leaves and not recorded.hidden
    # Anyone with the bytes and the Order re-derives the input CID.
    again = add_path(data, None, profile=get_profile(recorded.profile), hidden=recorded.hidden).cid
    assert again == order.inputs["data"]
    assert add_path(data, None).cid != again, "the profile matters: the default gives another CID"


def test_imports_must_name_inputs(node: Node, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    parsed = import_input(node, f"f={tmp_path / 'f'}")
    assert parsed.imported is not None and parsed.imported.profile == "kubo-cidv1"
    with pytest.raises(RecordError, match="imports"):
        OrderRecord(
            function=FUNCTION, structure=STRUCTURE, inputs={"f": parsed.cid}, imports={"g": parsed.imported}
        )
