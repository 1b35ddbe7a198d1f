"""CARv2: import of the data payload (index never trusted), export with an index, strict decoding.

The independent oracle is npm @ipld/car (pinned in tests/oracle): it reads CATs' CARv2 exports
and locates every block, and writes the CARv1 payloads the import tests wrap.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cats_runtime.cas import (
    CID,
    Block,
    MemoryBlockStore,
    add_bytes,
    add_path,
    export_car,
    import_car,
    read_car,
)
from cats_runtime.cas._carv2 import CARV2_PRAGMA, V2Header, decode_index, decode_v2_header, write_car_v2
from cats_runtime.errors import CARFormatError, IntegrityError

ORACLE_DIR = Path(__file__).resolve().parent.parent / "oracle"
NODE = shutil.which("node")
needs_car_oracle = pytest.mark.skipif(
    NODE is None or not (ORACLE_DIR / "node_modules" / "@ipld" / "car").is_dir(),
    reason="npm @ipld/car is not installed (run .ci/install-oracles.sh)",
)


def car_oracle(*args: str, stdin: str | None = None) -> dict[str, Any]:
    assert NODE is not None
    out = subprocess.run(
        [NODE, str(ORACLE_DIR / "car-oracle.mjs"), *args],
        input=stdin,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return json.loads(out) if out.strip() else {}


def sample(tmp_path: Path) -> tuple[MemoryBlockStore, CID]:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "big.bin").write_bytes(os.urandom(700_000))
    (src / "d" / "a.txt").write_text("alpha")
    store = MemoryBlockStore()
    return store, add_path(src, store).cid


def v2_wrap(payload: bytes, *, pad_before: int = 0, index: bytes = b"") -> bytes:
    data_offset = len(CARV2_PRAGMA) + 40 + pad_before
    index_offset = data_offset + len(payload) if index else 0
    header = V2Header(0, data_offset, len(payload), index_offset).encode()
    return CARV2_PRAGMA + header + bytes(pad_before) + payload + index


def test_export_v2_round_trips_and_its_index_locates_every_block(tmp_path: Path) -> None:
    store, root = sample(tmp_path)
    out = io.BytesIO()
    count = export_car(store, [root], out, version=2)
    raw = out.getvalue()
    assert raw.startswith(CARV2_PRAGMA)
    header = decode_v2_header(raw[11:51])
    payload = raw[header.data_offset : header.data_offset + header.data_size]
    v1 = io.BytesIO()
    export_car(store, [root], v1)
    assert payload == v1.getvalue(), "the data payload is exactly the CARv1 export"
    entries = decode_index(raw[header.index_offset :])
    assert len(entries) == count and all(code == 0x12 and len(digest) == 32 for code, digest, _ in entries)
    reader = read_car(io.BytesIO(raw))
    assert reader.version == 2 and reader.roots == (root,)
    blocks = {b.cid.digest: b for b in reader}
    assert set(blocks) == {digest for _, digest, _ in entries}
    for _, digest, offset in entries:  # each offset is that block's section in the payload
        cid = blocks[digest].cid
        prefix = _varint(len(cid.buffer) + len(blocks[digest].data)) + cid.buffer
        assert payload[offset : offset + len(prefix)] == prefix


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@needs_car_oracle
def test_npm_ipld_car_reads_our_carv2_and_agrees_with_the_index(tmp_path: Path) -> None:
    store, root = sample(tmp_path)
    path = tmp_path / "out.car"
    with open(path, "wb") as f:
        export_car(store, [root], f, version=2)
    theirs = car_oracle("read", str(path))
    assert theirs["version"] == 2 and theirs["roots"] == [str(root)]
    raw = path.read_bytes()
    header = decode_v2_header(raw[11:51])
    ours = {digest: offset for _, digest, offset in decode_index(raw[header.index_offset :])}
    assert len(theirs["blocks"]) == len(ours)
    for block in theirs["blocks"]:
        cid = CID.decode(block["cid"])
        assert ours[cid.digest] == block["offset"] - header.data_offset


@needs_car_oracle
def test_import_reads_a_carv2_around_an_npm_written_payload_and_ignores_a_lying_index(tmp_path: Path) -> None:
    store, root = sample(tmp_path)
    blocks = {str(c): base64.b64encode(store.get(c)).decode() for c in store}
    car_oracle("write", str(tmp_path / "v1.car"), stdin=json.dumps({"roots": [str(root)], "blocks": blocks}))
    payload = (tmp_path / "v1.car").read_bytes()
    garbage_index = b"\x81\x08" + b"\xff" * 64  # a forged index must not matter
    fresh = MemoryBlockStore()
    roots = import_car(fresh, io.BytesIO(v2_wrap(payload, pad_before=13, index=garbage_index)))
    assert roots == [root] and set(fresh) == set(store)


def test_cats_import_cli_accepts_carv2_and_v2_export_cli(tmp_path: Path, cats_home: Path) -> None:
    from cats_runtime.cli import main

    src = tmp_path / "f.txt"
    src.write_text("hello carv2")
    with pytest.raises(SystemExit):
        main(["add", str(src)])
    cid = add_bytes(b"hello carv2", None)
    with pytest.raises(SystemExit) as exc:
        main(["car", "export", str(cid), "--version", "2", "-o", str(tmp_path / "x.car")])
    assert exc.value.code == 0
    assert (tmp_path / "x.car").read_bytes().startswith(CARV2_PRAGMA)
    with pytest.raises(SystemExit) as exc:
        main(["car", "import", str(tmp_path / "x.car")])
    assert exc.value.code == 0


def test_a_corrupt_block_in_a_carv2_payload_is_refused(tmp_path: Path) -> None:
    store, root = sample(tmp_path)
    out = io.BytesIO()
    export_car(store, [root], out)
    payload = bytearray(out.getvalue())
    payload[-1] ^= 1
    fresh = MemoryBlockStore()
    with pytest.raises(IntegrityError):
        import_car(fresh, io.BytesIO(v2_wrap(bytes(payload))))
    assert list(fresh) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw[:30], "truncated"),
        (lambda raw: raw[:11] + bytes(40) + raw[51:], "data offset"),
        (lambda raw: raw[:27] + struct.pack("<QQQ", 51, 0, 0) + raw[51:], "data offset|non-empty"),
        (lambda raw: raw[:27] + struct.pack("<Q", 51) + struct.pack("<Q", 10**9) + raw[43:], "index after"),
        (lambda raw: raw[:27] + struct.pack("<QQQ", 51, 5, 0) + raw[51:], "within|truncated"),
        (lambda raw: raw[:27] + struct.pack("<QQQ", 51, 100, 60) + raw[51:], "index after"),
    ],
)
def test_malformed_carv2_headers_are_refused(mutate: Any, message: str, tmp_path: Path) -> None:
    store, root = sample(tmp_path)
    out = io.BytesIO()
    export_car(store, [root], out, version=2)
    with pytest.raises(CARFormatError, match=message):
        import_car(MemoryBlockStore(), io.BytesIO(mutate(out.getvalue())))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_carv2_headers_and_payloads_raise_only_car_errors(tail: bytes) -> None:
    store = MemoryBlockStore()
    try:
        reader = read_car(io.BytesIO(CARV2_PRAGMA + tail))
        for _ in reader:
            pass
    except (CARFormatError, IntegrityError):
        pass
    assert list(store) == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzzed_indexes_raise_only_car_errors(raw: bytes) -> None:
    try:
        entries = decode_index(b"\x81\x08" + raw)
    except CARFormatError:
        return
    assert all(len(digest) > 0 for _, digest, _ in entries)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=20, unique=True), st.data())
def test_index_mutations_are_caught_or_parse(payloads: list[bytes], data: st.DataObject) -> None:
    store = MemoryBlockStore()
    cids = [add_bytes(p, store) for p in payloads]
    out = io.BytesIO()
    write_car_v2(out, cids[:1], [Block.checked(c, store.get(c)) for c in cids])
    raw = out.getvalue()
    header = decode_v2_header(raw[11:51])
    index = bytearray(raw[header.index_offset :])
    assert len(decode_index(bytes(index))) == len(set(cids))
    position = data.draw(st.integers(0, len(index) - 1))
    index[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(index)))
    with contextlib.suppress(CARFormatError):  # any other exception fails the test
        decode_index(bytes(index[:cut]))
