"""CARv1: the spec fixture, byte-exact writing, strict streaming reads, all-or-nothing import."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cats_runtime.cas import (
    CID,
    DAG_CBOR,
    MAX_SECTION,
    RAW,
    Block,
    CarFileSource,
    FSBlockStore,
    MemoryBlockStore,
    encode_varint,
    export_car,
    import_car,
    read_car,
    write_car,
)
from cats_runtime.cas._carv2 import write_car_v2
from cats_runtime.errors import BlockNotFoundError, CARFormatError, IntegrityError, InvalidInputError

DATA = Path(__file__).resolve().parent.parent / "data"
# The "carv1-basic" fixture of the CARv1 spec (ipld.io/specs/transport/car/fixture/carv1-basic),
# as written by go-car: two dag-cbor roots, CIDv0 dag-pb nodes, raw leaves, depth-first order.
SPEC_CAR = (DATA / "carv1-basic.car").read_bytes()
SPEC_ROOTS = [
    "bafyreihyrpefhacm6kkp4ql6j6udakdit7g3dmkzfriqfykhjw6cad5lrm",
    "bafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morwlm",
]
SPEC_BLOCKS = [  # (cid, section offset, section length incl. varint, block length) from the spec
    ("bafyreihyrpefhacm6kkp4ql6j6udakdit7g3dmkzfriqfykhjw6cad5lrm", 100, 92, 55),
    ("QmNX6Tffavsya4xgBi2VJQnSuqy9GsxongxZZ9uZBqp16d", 192, 133, 97),
    ("bafkreifw7plhl6mofk6sfvhnfh64qmkq73oeqwl6sloru6rehaoujituke", 325, 41, 4),
    ("QmWXZxVQ9yZfhQxLD35eDR8LiMRsYtHxYqTFCBbJoiJVys", 366, 130, 94),
    ("bafkreiebzrnroamgos2adnbpgw5apo3z4iishhbdx77gldnbk57d4zdio4", 496, 41, 4),
    ("QmdwjhxpxzcMsR3qUuj7vUL8pbA7MgR3GAxWi2GLHjsKCT", 537, 82, 47),
    ("bafkreidbxzk2ryxwwtqxem4l3xyyjvw35yu4tcct4cqeqxwo47zhxgxqwq", 619, 41, 4),
    ("bafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morwlm", 660, 55, 18),
]
SECTION_STARTS = {offset for _, offset, _, _ in SPEC_BLOCKS} | {len(SPEC_CAR)}


class _NoReadAll(io.RawIOBase):
    """A non-seekable stream that fails the test if anyone reads it whole."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        assert size is not None and size >= 0, "the CAR reader must never read the whole stream"
        self.largest_read = max(self.largest_read, size)
        return self._buf.read(size)


def _car(roots: list[CID], blocks: list[Block]) -> bytes:
    out = io.BytesIO()
    write_car(out, roots, blocks)
    return out.getvalue()


# -- the spec fixture ------------------------------------------------------------------------


def test_reads_the_spec_fixture() -> None:
    reader = read_car(_NoReadAll(SPEC_CAR))
    assert [str(r) for r in reader.roots] == SPEC_ROOTS
    blocks = list(reader)
    assert [(str(b.cid), len(b.data)) for b in blocks] == [(c, n) for c, _, _, n in SPEC_BLOCKS]
    # the sections tile the file exactly as the spec's index says
    assert SPEC_BLOCKS[0][1] == 100
    for (_, offset, length, _), (_, following, _, _) in itertools.pairwise(SPEC_BLOCKS):
        assert offset + length == following
    assert SPEC_BLOCKS[-1][1] + SPEC_BLOCKS[-1][2] == len(SPEC_CAR)


def test_export_reproduces_the_spec_fixture_byte_for_byte() -> None:
    store = MemoryBlockStore()
    store.put_many(read_car(io.BytesIO(SPEC_CAR)))
    out = io.BytesIO()
    written = export_car(store, [CID.decode(r) for r in SPEC_ROOTS], out)
    assert out.getvalue() == SPEC_CAR
    assert written == len(SPEC_BLOCKS)


def test_write_car_byte_for_byte_from_the_spec() -> None:
    block = Block.encode(b"hello", RAW)
    cid = block.cid.buffer
    assert len(cid) == 36
    header = (
        b"\xa2"  # map(2)
        + b"\x65roots"  # text(5), sorted first: shorter key
        + b"\x81"  # array(1)
        + b"\xd8\x2a"  # tag 42
        + b"\x58\x25\x00"  # bytes(37): the 0x00 multibase prefix then the CID
        + cid
        + b"\x67version"  # text(7)
        + b"\x01"
    )
    expected = bytes([len(header)]) + header + bytes([len(cid) + 5]) + cid + b"hello"
    assert _car([block.cid], [block]) == expected


# -- round trips -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=600), max_size=8),
    codecs=st.lists(st.sampled_from([RAW, DAG_CBOR, 0x0129]), min_size=8, max_size=8),
    extra_roots=st.integers(min_value=0, max_value=2),
)
def test_write_read_round_trip(payloads: list[bytes], codecs: list[int], extra_roots: int) -> None:
    blocks = [Block.encode(p, c) for p, c in zip(payloads, codecs, strict=False)]
    roots = [b.cid for b in blocks[:1]] + [Block.encode(bytes([i])).cid for i in range(extra_roots)]
    if not roots:
        roots = [Block.encode(b"root").cid]
    reader = read_car(_NoReadAll(_car(roots, blocks)))
    assert list(reader.roots) == roots
    assert [(b.cid, b.data) for b in reader] == [(b.cid, b.data) for b in blocks]


def test_export_import_round_trip_between_stores(tmp_path: Path, dag: Any) -> None:
    source = FSBlockStore(tmp_path / "a")
    source.put_many(dag.blocks)
    out = io.BytesIO()
    export_car(source, [dag.root.cid], out)
    target = FSBlockStore(tmp_path / "b")
    assert import_car(target, io.BytesIO(out.getvalue())) == [dag.root.cid]
    assert set(target) == set(source)
    assert target.verify() == []


def test_export_of_several_roots_writes_shared_blocks_once(dag: Any) -> None:
    store = MemoryBlockStore()
    store.put_many(dag.blocks)
    out = io.BytesIO()
    export_car(store, [dag.pb_b.cid, dag.root.cid], out)
    cids = [b.cid for b in read_car(io.BytesIO(out.getvalue()))]
    assert cids == [dag.pb_b.cid, dag.leaf2.cid, dag.pb_a.cid, dag.leaf0.cid, dag.leaf1.cid, dag.root.cid]


def test_write_needs_roots() -> None:
    with pytest.raises(InvalidInputError, match="at least one root"):
        write_car(io.BytesIO(), [], [])


def test_a_reader_is_single_pass() -> None:
    reader = read_car(io.BytesIO(SPEC_CAR))
    list(reader)
    with pytest.raises(CARFormatError, match="can be read once"):
        list(reader)


# -- strictness ------------------------------------------------------------------------------


def _read_all(data: bytes) -> list[Block]:
    return list(read_car(io.BytesIO(data)))


def _header(obj: bytes) -> bytes:
    return encode_varint(len(obj)) + obj


def test_empty_stream() -> None:
    with pytest.raises(CARFormatError, match="found an empty stream"):
        _read_all(b"")


def test_header_not_a_map() -> None:
    with pytest.raises(CARFormatError, match="header at byte 1 to be a map, found list"):
        _read_all(_header(b"\x80"))


def test_a_bare_carv2_pragma_and_other_versions_are_refused() -> None:
    pragma = bytes.fromhex("0aa16776657273696f6e02")  # the CARv2 pragma, no header after it
    with pytest.raises(CARFormatError, match=r"truncated CARv2 header at byte 11"):
        _read_all(pragma)
    from cats_runtime.cas import dagcbor_encode

    with pytest.raises(CARFormatError, match=r"version 1 \(or a CARv2\) at byte 1, found 3"):
        _read_all(_header(dagcbor_encode({"roots": [], "version": 3})))


class _FlipSpoolFirst(FSBlockStore):
    """A real FSBlockStore that, when the import hands it the spooled blocks, first flips a byte
    of the spool file: the window between verifying blocks (while spooling) and storing them.

    The spool is found as the deleted file the import opened in this store's directory.
    """

    flipped = False

    def put_many(self, blocks: Iterable[Block]) -> None:
        root = str(self.root.resolve())
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith(root) and target.endswith("(deleted)"):
                    first = os.pread(int(fd), 1, 0)
                    if first:
                        os.pwrite(int(fd), bytes([first[0] ^ 1]), 0)
                        self.flipped = True
        super().put_many(blocks)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to find the spool file")
def test_a_byte_flipped_in_the_spool_is_caught_before_storing(tmp_path: Path) -> None:
    store = _FlipSpoolFirst(tmp_path / "blocks")
    before = _snapshot(store)
    with pytest.raises(IntegrityError, match="CAR import spool"):
        import_car(store, io.BytesIO(SPEC_CAR))
    assert store.flipped, "the test must have found and changed the spool"
    assert _snapshot(store) == before


def test_header_with_extra_keys_or_no_roots() -> None:
    from cats_runtime.cas import dagcbor_encode

    root = Block.encode(b"r").cid
    with pytest.raises(CARFormatError, match="expected header keys"):
        _read_all(_header(dagcbor_encode({"roots": [root], "version": 1, "x": 0})))
    with pytest.raises(CARFormatError, match="non-empty list of root CIDs"):
        _read_all(_header(dagcbor_encode({"roots": [], "version": 1})))
    with pytest.raises(CARFormatError, match="non-empty list of root CIDs"):
        _read_all(_header(dagcbor_encode({"roots": ["bafy"], "version": 1})))


def test_header_not_dag_cbor() -> None:
    with pytest.raises(CARFormatError, match="expected a DAG-CBOR header at byte 1"):
        _read_all(_header(b"\xa2\xff"))


def test_header_length_zero_or_huge() -> None:
    with pytest.raises(CARFormatError, match="expected a header length"):
        _read_all(b"\x00")
    with pytest.raises(CARFormatError, match="expected a header length"):
        _read_all(encode_varint(1 << 40))


def test_zero_length_section() -> None:
    with pytest.raises(CARFormatError, match="non-empty section at byte 715, found length 0"):
        _read_all(SPEC_CAR + b"\x00")


def test_section_longer_than_the_limit() -> None:
    with pytest.raises(CARFormatError, match=f"at most {MAX_SECTION} bytes at byte 715"):
        _read_all(SPEC_CAR + encode_varint(MAX_SECTION + 1))


def test_non_minimal_and_overlong_varints() -> None:
    with pytest.raises(CARFormatError, match="minimal section length varint at byte 715"):
        _read_all(SPEC_CAR + b"\x81\x00")
    with pytest.raises(CARFormatError, match="at most 9 bytes at byte 715"):
        _read_all(SPEC_CAR + b"\xff" * 10)
    with pytest.raises(CARFormatError, match="truncated section length varint at byte 715"):
        _read_all(SPEC_CAR + b"\x80")


def test_section_without_a_valid_cid() -> None:
    with pytest.raises(CARFormatError, match="expected a CID in the section at byte 715"):
        _read_all(SPEC_CAR + b"\x05\x02\x55\x12\x20\x00")  # CID version 2
    with pytest.raises(CARFormatError, match="expected a CID in the section at byte 715"):
        _read_all(SPEC_CAR + b"\x03\x12\x20\x00")  # truncated CIDv0 section


def test_cidv0_sections_are_accepted() -> None:
    blocks = _read_all(SPEC_CAR)
    assert [b.cid.version for b in blocks].count(0) == 3


def test_corrupt_block_raises_integrity_error_with_offset() -> None:
    data = bytearray(SPEC_CAR)
    data[660 + 55 - 1] ^= 1  # last byte of the last block
    with pytest.raises(
        IntegrityError, match=f"block {SPEC_ROOTS[1]} from CAR section at byte 660 is corrupt"
    ):
        _read_all(bytes(data))


def test_truncation_anywhere_raises_or_ends_at_a_section_boundary() -> None:
    for cut in range(len(SPEC_CAR)):
        truncated = SPEC_CAR[:cut]
        if cut in SECTION_STARTS:
            blocks = _read_all(truncated)  # CARv1 cannot tell: a shorter, valid CAR
            assert len(blocks) == sum(1 for _, offset, _, _ in SPEC_BLOCKS if offset < cut)
            continue
        with pytest.raises(CARFormatError, match=r"at byte \d+"):
            _read_all(truncated)


def test_every_single_byte_flip_is_caught_or_harmless() -> None:
    for i in range(len(SPEC_CAR)):
        for mask in (0x01, 0x80):
            data = bytearray(SPEC_CAR)
            data[i] ^= mask
            try:
                blocks = list(read_car(io.BytesIO(bytes(data))))
            except (CARFormatError, IntegrityError):
                continue  # anything else propagates and fails the test
            # A flip that still parses can only have changed a root CID in the header (the
            # header has no hash) or the block bytes' CID to one that the bytes still match.
            for block in blocks:
                assert block.cid.matches(block.data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400))
def test_random_bytes_raise_only_car_errors(data: bytes) -> None:
    with contextlib.suppress(CARFormatError, IntegrityError):  # any other error fails
        list(read_car(io.BytesIO(data)))


@settings(max_examples=200, deadline=None)
@given(prefix_len=st.integers(min_value=0, max_value=len(SPEC_CAR)), tail=st.binary(max_size=64))
def test_garbled_tails_raise_only_car_errors(prefix_len: int, tail: bytes) -> None:
    with contextlib.suppress(CARFormatError, IntegrityError):  # any other error fails
        list(read_car(io.BytesIO(SPEC_CAR[:prefix_len] + tail)))


# -- all-or-nothing import -------------------------------------------------------------------


def _snapshot(store: FSBlockStore) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file()}


def test_import_is_all_or_nothing(tmp_store: FSBlockStore) -> None:
    already = read_car(io.BytesIO(SPEC_CAR))
    first = next(iter(already))
    tmp_store.put(first)  # present before: must survive every failed import
    before = _snapshot(tmp_store)
    corrupt = bytearray(SPEC_CAR)
    corrupt[-1] ^= 1
    with pytest.raises(IntegrityError, match="from CAR section at byte 660"):
        import_car(tmp_store, io.BytesIO(bytes(corrupt)))
    assert _snapshot(tmp_store) == before
    with pytest.raises(CARFormatError, match="truncated section"):
        import_car(tmp_store, io.BytesIO(SPEC_CAR[:-3]))
    assert _snapshot(tmp_store) == before
    roots = import_car(tmp_store, io.BytesIO(SPEC_CAR))
    assert [str(r) for r in roots] == SPEC_ROOTS
    assert len(set(tmp_store)) == 8
    assert tmp_store.verify() == []
    assert not [p for p in tmp_store.root.iterdir() if p.name.startswith(".car-import-")]


def test_import_into_a_memory_store(dag: Any) -> None:
    source = MemoryBlockStore()
    source.put_many(dag.blocks)
    out = io.BytesIO()
    export_car(source, [dag.root.cid], out)
    target = MemoryBlockStore()
    assert import_car(target, io.BytesIO(out.getvalue())) == [dag.root.cid]
    assert len(target) == len(dag.blocks)


# -- a CAR file read in place (what a node checks a submitted Order in) --------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.lists(st.binary(max_size=600), min_size=1, max_size=8),
    codecs=st.lists(st.sampled_from([RAW, DAG_CBOR, 0x0129]), min_size=8, max_size=8),
    version=st.sampled_from([1, 2]),
)
def test_car_file_source_serves_every_block_in_place(
    tmp_path: Path, payloads: list[bytes], codecs: list[int], version: int
) -> None:
    blocks = [Block.encode(p, c) for p, c in zip(payloads, codecs, strict=False)]
    store = MemoryBlockStore()
    store.put_many(blocks)
    path = tmp_path / f"blocks-v{version}.car"
    with open(path, "wb") as out:
        if version == 1:
            write_car(out, [blocks[0].cid], blocks)
        else:
            write_car_v2(out, [blocks[0].cid], blocks)
    with open(path, "rb") as f:
        car = CarFileSource(f)
        assert list(car.roots) == [blocks[0].cid]
        assert len(car) == len({b.cid for b in blocks})
        for block in blocks:
            assert car.has(block.cid) and car.get(block.cid) == block.data
        assert not car.has(Block.encode(b"absent").cid)
        wanted = [b.cid for b in reversed(blocks)]
        assert [b.cid for b in car.blocks(wanted)] == list(dict.fromkeys(wanted))


def test_car_file_source_rechecks_what_it_reads(tmp_path: Path) -> None:
    block = Block.encode(b"payload that will be flipped")
    path = tmp_path / "one.car"
    with open(path, "wb") as out:
        write_car(out, [block.cid], [block])
    with open(path, "r+b") as f:
        car = CarFileSource(f)
        f.seek(-1, os.SEEK_END)
        f.write(b"!")
        f.flush()
        with pytest.raises(IntegrityError, match="CAR file"):
            car.get(block.cid)
    with pytest.raises(BlockNotFoundError, match="not in the CAR"):
        car.get(Block.encode(b"absent").cid)
    truncated = tmp_path / "cut.car"
    truncated.write_bytes(path.read_bytes()[:-3])
    with open(truncated, "rb") as f, pytest.raises(CARFormatError, match="truncated"):
        CarFileSource(f)
