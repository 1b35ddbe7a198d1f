"""Tests of the strict DAG-CBOR codec (cats_runtime.cas._dagcbor)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import dag_cbor
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multiformats import CID as MFCID

from cats_runtime.cas import (
    CID,
    DAG_CBOR,
    DAG_PB,
    HASH_NAMES,
    RAW,
    dagcbor_decode,
    dagcbor_encode,
    iter_links,
)
from cats_runtime.cas._dagcbor import MAX_DEPTH, decode, encode
from cats_runtime.errors import DecodeError, InvalidInputError, UnsupportedHashError

FIXTURES = json.loads((Path(__file__).parent.parent / "data" / "ipld_codec_fixtures.json").read_text("utf-8"))

# -- strategies ---------------------------------------------------------------------------

cids = st.one_of(
    st.builds(lambda d: CID(1, DAG_CBOR, 0x12, d), st.binary(min_size=32, max_size=32)),
    st.builds(lambda d: CID(1, RAW, 0x12, d), st.binary(min_size=32, max_size=32)),
    st.builds(lambda d: CID(0, DAG_PB, 0x12, d), st.binary(min_size=32, max_size=32)),
    st.builds(lambda d: CID(1, RAW, 0x00, d), st.binary(max_size=40)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.integers(min_value=-300, max_value=300),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.binary(),
    cids,
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=8), children, max_size=6),
    ),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equality that also compares types, so True != 1 and 1.0 != 1."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return bool(a == b)


def to_mf(value: Any) -> Any:
    """Our data model -> the dag_cbor package's (its CIDs are multiformats.CID)."""
    if isinstance(value, CID):
        return MFCID.decode(str(value))
    if isinstance(value, list):
        return [to_mf(v) for v in value]
    if isinstance(value, dict):
        return {k: to_mf(v) for k, v in value.items()}
    return value


def from_mf(value: Any) -> Any:
    if isinstance(value, MFCID):
        return CID.from_bytes(bytes(value))
    if isinstance(value, list):
        return [from_mf(v) for v in value]
    if isinstance(value, dict):
        return {k: from_mf(v) for k, v in value.items()}
    return value


# -- fixed vectors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65535, "19ffff"),
        (65536, "1a00010000"),
        (2**32 - 1, "1affffffff"),
        (2**32, "1b0000000100000000"),
        (2**64 - 1, "1bffffffffffffffff"),
        (-1, "20"),
        (-24, "37"),
        (-25, "3818"),
        (-(2**64), "3bffffffffffffffff"),
        (1.5, "fb3ff8000000000000"),
        (-0.0, "fb8000000000000000"),
        (1.0, "fb3ff0000000000000"),
        (False, "f4"),
        (True, "f5"),
        (None, "f6"),
        (b"", "40"),
        (b"\x01\x02", "420102"),
        ("", "60"),
        ("a", "6161"),
        ("\u00fc", "62c3bc"),
        ([], "80"),
        ([1, [2]], "82018102"),
        ({}, "a0"),
        # Length-first key order: "b" < "aa" although "aa" < "b" bytewise.
        ({"aa": 1, "b": 2}, "a261620262616101"),
        ({"b": 1, "a": 2}, "a2616102616201"),
        (
            CID.decode("bafkqabiaaebagba"),
            "d82a4a00015500050001020304",
        ),
    ],
)
def test_known_encodings(value: Any, hex_: str) -> None:
    assert encode(value).hex() == hex_
    assert same(decode(bytes.fromhex(hex_)), value)


@pytest.mark.parametrize("name", sorted(FIXTURES["fixtures"]))
def test_ipld_codec_fixtures(name: str) -> None:
    fixture = FIXTURES["fixtures"][name]
    data = bytes.fromhex(fixture["dag-cbor"])
    value = decode(data)
    again = encode(value)
    assert again == data
    assert str(CID.compute(again, DAG_CBOR)) == fixture["dag-cbor-cid"]


@pytest.mark.parametrize("name", sorted(FIXTURES["unsupported_hash"]))
def test_fixture_links_with_unverifiable_hashes_decode_but_cannot_be_verified(name: str) -> None:
    # Links may name hash functions CATs cannot compute (sha1, sha3-512...): the block still
    # decodes and round-trips, but verifying a block under such a CID is refused.
    data = bytes.fromhex(FIXTURES["unsupported_hash"][name]["dag-cbor"])
    value = decode(data)
    assert encode(value) == data
    links = list(iter_links(value))
    assert links
    foreign = [c for c in links if c.hash_code not in HASH_NAMES]
    assert foreign
    with pytest.raises(UnsupportedHashError):
        foreign[0].verify(b"")


def test_public_names_are_exported() -> None:
    assert dagcbor_encode is encode
    assert dagcbor_decode is decode


def test_decode_accepts_any_buffer() -> None:
    data = encode({"a": [b"xy", "z"]})
    assert decode(bytearray(data)) == decode(memoryview(data)) == {"a": [b"xy", "z"]}


def test_decoded_values_have_our_types() -> None:
    cid = CID.compute(b"x", RAW)
    value = decode(encode({"c": cid, "b": b"\x00", "l": [1]}))
    assert type(value["c"]) is CID
    assert value["c"] == cid
    assert type(value["b"]) is bytes
    assert type(value["l"]) is list


def test_cidv0_link_round_trips() -> None:
    cid = CID.decode("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY")
    data = encode(cid)
    assert data[:5] == bytes.fromhex("d82a582300")
    assert decode(data) == cid
    assert decode(data).version == 0


def test_str_and_int_subclasses_encode_as_their_base_kind() -> None:
    import enum

    class Mode(enum.StrEnum):
        BATCH = "batch"

    class Level(enum.IntEnum):
        HIGH = 3

    assert encode({"m": Mode.BATCH, "l": Level.HIGH}) == encode({"m": "batch", "l": 3})


# -- decode errors ------------------------------------------------------------------------

BAD_CID_BYTES = "d82a4500015500ff"


@pytest.mark.parametrize(
    ("hex_", "match"),
    [
        ("", r"at byte 0: expected a data item, found end of input"),
        ("1817", r"at byte 0: non-minimal argument: 23"),
        ("190017", r"at byte 0: non-minimal argument: 23 written in 2 bytes"),
        ("1a000000ff", r"non-minimal argument: 255 written in 4 bytes"),
        ("1b00000000ffffffff", r"non-minimal argument: 4294967295 written in 8 bytes"),
        ("3817", r"non-minimal argument"),
        ("58010a", r"non-minimal argument: 1 written in 1 extra byte"),
        ("780161", r"non-minimal argument"),
        ("980100", r"non-minimal argument"),
        ("b80161610a", r"non-minimal argument"),
        ("1c", r"reserved additional information 28"),
        ("1d", r"reserved additional information 29"),
        ("1e", r"reserved additional information 30"),
        ("9fff", r"at byte 0: indefinite-length items are not allowed"),
        ("5f41ff", r"indefinite-length"),
        ("7f6161ff", r"indefinite-length"),
        ("bf616101ff", r"indefinite-length"),
        ("1f", r"indefinite-length"),
        ("ff", r"unexpected break"),
        ("a2616201616102", r"at byte 4: out-of-order map key 'a'"),
        ("a262616101616202", r"at byte 5: out-of-order map key 'b'"),
        ("a2616201616101", r"at byte 4: out-of-order map key 'a'"),
        ("a2616101616102", r"at byte 4: duplicate map key 'a'"),
        ("a3636261720363666f6f0163666f6f02", r"duplicate map key .foo."),
        ("a10102", r"at byte 1: expected a string map key, found major type 0"),
        ("a1410102", r"expected a string map key, found major type 2"),
        ("c074323031332d30332d32315432303a30343a30305a", r"expected tag 42 \(CID\), found tag 0"),
        ("d82b4100", r"found tag 43"),
        ("d9002a4100", r"non-minimal argument: 42 written in 2 bytes"),
        ("d82a6161", r"expected a byte string inside tag 42, found major type 3"),
        ("d82a40", r"at byte 3: expected a CID byte string starting with the 0x00 multibase prefix"),
        (
            "d82a58250101711220" + "00" * 32,
            r"expected a CID byte string starting with the 0x00",
        ),
        ("d82a4100", r"invalid CID in tag 42"),
        (BAD_CID_BYTES, r"at byte 4: invalid CID in tag 42"),
        ("d82a58260001711220" + "00" * 33, r"invalid CID in tag 42: expected a CID of 36 bytes"),
        ("d82a", r"expected the byte string of a CID, found end of input"),
        ("d82a5825000171", r"expected 37 bytes of CID bytes, found 3"),
        # The shape of a 36-byte link (read by the fast path), but sha2-512 with 32 bytes.
        ("d82a58250001711320" + "00" * 32, r"at byte 5: invalid CID in tag 42: .*sha2-512"),
        ("d82a58250001711220" + "00" * 31, r"expected 37 bytes of CID bytes, found 36"),
        ("f93c00", r"expected a 64-bit float, found a 16-bit float"),
        ("fa3fc00000", r"expected a 64-bit float, found a 32-bit float"),
        ("fb7ff8000000000000", r"expected a finite float, found nan"),
        ("fb7ff0000000000000", r"expected a finite float, found inf"),
        ("fbfff0000000000000", r"expected a finite float, found -inf"),
        ("fb3ff8", r"expected 8 bytes of a 64-bit float, found 2"),
        ("f7", r"undefined is not allowed"),
        ("f0", r"simple value 16 is not allowed"),
        ("f820", r"simple value with additional info 24 is not allowed"),
        ("fc", r"additional info 28"),
        ("0000", r"at byte 1: expected end of input, found 1 trailing bytes"),
        ("a0f6f6", r"at byte 1: expected end of input, found 2 trailing bytes"),
        ("19ff", r"at byte 1: expected 2 bytes of a 2-byte argument, found 1"),
        ("18", r"expected 1 bytes of a 1-byte argument, found 0"),
        ("1affff", r"4-byte argument"),
        ("1bffff", r"8-byte argument"),
        ("6261", r"at byte 1: expected 2 bytes of text string content, found 1"),
        ("4361", r"expected 3 bytes of byte string content, found 1"),
        ("8201", r"at byte 0: list of 2 items cannot fit in 1 bytes"),
        ("a1616101a1", r"trailing bytes"),
        ("a2616101", r"map of 2 entries cannot fit in 3 bytes"),
        ("a16161", r"at byte 3: expected a data item"),
        ("a1", r"map of 1 entries cannot fit in 0 bytes"),
        ("9bffffffffffffffff", r"list of 18446744073709551615 items cannot fit in 0 bytes"),
        ("5bffffffffffffffff", r"expected 18446744073709551615 bytes of byte string content"),
        ("bbffffffffffffffff", r"map of 18446744073709551615 entries cannot fit"),
        ("61ff", r"at byte 1: expected UTF-8 text, found an invalid byte sequence"),
        ("62c361", r"at byte 1: expected UTF-8 text"),
        ("62eda080", r"expected UTF-8 text"),  # an encoded surrogate is not UTF-8
        ("a161ff00", r"at byte 2: expected UTF-8 text"),
        ("820161", r"at byte 3: expected 1 bytes of text string content, found 0"),
    ],
)
def test_decode_rejects(hex_: str, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode(bytes.fromhex(hex_))


def test_decode_rejects_deep_nesting_without_recursion_error() -> None:
    ok = b"\x81" * (MAX_DEPTH - 1) + b"\x80"
    assert decode(ok) is not None
    too_deep = b"\x81" * MAX_DEPTH + b"\x80"
    with pytest.raises(DecodeError, match=rf"at byte {MAX_DEPTH}: nesting deeper than {MAX_DEPTH} levels"):
        decode(too_deep)
    hostile = b"\xa1\x61a" * 10_000 + b"\xf6"
    with pytest.raises(DecodeError, match="nesting deeper"):
        decode(hostile)


def test_decode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid DAG-CBOR"):
        decode(b"\xff")


# -- encode errors ------------------------------------------------------------------------


def _cyclic() -> list[Any]:
    cycle: list[Any] = []
    cycle.append(cycle)
    return cycle


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ((1, 2), r"at \$: expected a list, found a tuple"),
        ({"a": [0, (1,)]}, r"at \$\.a\[1\]: expected a list, found a tuple"),
        ({1: "x"}, r"at \$: expected map keys to be str, found int key 1"),
        ({"p": {b"k": 1}}, r"at \$\.p: expected map keys to be str, found bytes"),
        (math.nan, r"expected a finite float .* found nan"),
        ({"x": [math.inf]}, r"at \$\.x\[0\]: expected a finite float .* found inf"),
        (-math.inf, r"found -inf"),
        (2**64, r"expected an integer <= 2\*\*64 - 1, found 18446744073709551616"),
        (-(2**64) - 1, r"expected an integer >= -2\*\*64"),
        (
            {"s": {1, 2}},
            r"at \$\.s: expected None, bool, int, float, str, bytes, list, dict or CID, found set",
        ),
        (bytearray(b"x"), r"found bytearray"),
        (object(), r"found object"),
        ("\ud800", r"expected valid Unicode text"),
        ({"\udcff": 1}, r"expected valid Unicode text"),
        (_cyclic(), rf"expected at most {MAX_DEPTH} levels of nesting"),
    ],
)
def test_encode_rejects(value: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        encode(value)


def test_encode_depth_limit_matches_decode() -> None:
    value: Any = []
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert decode(encode(value)) == value
    with pytest.raises(InvalidInputError, match="levels of nesting"):
        encode([value])


# -- links --------------------------------------------------------------------------------


def test_iter_links_walks_everything_in_order() -> None:
    a, b, c = (CID.compute(bytes([i]), RAW) for i in range(3))
    value = decode(encode({"z": a, "list": [b, {"deep": [c]}, "not a cid", b"\x00"], "n": None}))
    # Decoded maps are in canonical key order: "z", "list".
    assert list(iter_links(value)) == [a, b, c]
    assert list(iter_links([a, a])) == [a, a]
    assert list(iter_links("text")) == []
    assert list(iter_links(a)) == [a]


# -- properties ---------------------------------------------------------------------------


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    back = decode(data)
    assert same(back, value) or same(back, _canonical_order(value))
    assert encode(back) == data


def _canonical_order(value: Any) -> Any:
    if isinstance(value, list):
        return [_canonical_order(v) for v in value]
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _canonical_order(value[k]) for k in keys}
    return value


@pytest.mark.oracle
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_matches_the_dag_cbor_package(value: Any) -> None:
    ours = encode(value)
    theirs = dag_cbor.encode(to_mf(value))
    assert ours == theirs
    assert same(from_mf(dag_cbor.decode(ours)), decode(theirs))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except DecodeError:
        return
    # Whatever is accepted is canonical: it re-encodes to exactly the same bytes.
    assert encode(value) == data


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.data())
def test_mutated_encodings_raise_only_decode_error(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(encode(value))
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[index] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut])):
        try:
            back = decode(candidate)
        except DecodeError:
            continue
        assert encode(back) == candidate
