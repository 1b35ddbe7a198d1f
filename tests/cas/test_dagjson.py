"""Tests of the DAG-JSON codec (cats_runtime.cas._dagjson)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cats_runtime.cas import (
    CID,
    DAG_CBOR,
    DAG_JSON,
    RAW,
    dagcbor_decode,
    dagcbor_encode,
    dagjson_decode,
    dagjson_encode,
)
from cats_runtime.cas._dagcbor import MAX_DEPTH
from cats_runtime.errors import DecodeError, InvalidInputError

FIXTURES = json.loads((Path(__file__).parent.parent / "data" / "ipld_codec_fixtures.json").read_text("utf-8"))

cids = st.one_of(
    st.builds(lambda d: CID(1, DAG_CBOR, 0x12, d), st.binary(min_size=32, max_size=32)),
    st.builds(lambda d: CID(0, 0x70, 0x12, d), st.binary(min_size=32, max_size=32)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    st.binary(),
    cids,
)
keys = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6).filter(lambda k: k != "/")
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=5)),
    max_leaves=25,
)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b
    return bool(a == b)


@pytest.mark.parametrize("name", sorted(FIXTURES["fixtures"]))
def test_ipld_codec_fixtures(name: str) -> None:
    fixture = FIXTURES["fixtures"][name]
    value = dagjson_decode(fixture["dag-json"])
    # The same value in both codecs: re-encoding gives the fixtures' blocks and CIDs.
    assert dagjson_encode(value) == fixture["dag-json"]
    assert str(CID.compute(dagjson_encode(value).encode(), DAG_JSON)) == fixture["dag-json-cid"]
    assert dagcbor_encode(value).hex() == fixture["dag-cbor"]
    assert same(dagcbor_decode(bytes.fromhex(fixture["dag-cbor"])), value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"b": 1, "a": [True, False, None]}, '{"a":[true,false,null],"b":1}'),
        ({"aa": 1, "b": 2}, '{"aa":1,"b":2}'),  # bytewise, unlike DAG-CBOR's length-first order
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (8.940696716308594e-8, "8.940696716308594e-8"),
        (1e16, "1e+16"),
        (2**64 - 1, "18446744073709551615"),
        (b"\xa1", '{"/":{"bytes":"oQ"}}'),
        (b"", '{"/":{"bytes":""}}'),
        ('é\n"\\\x01', '"é\\n\\"\\\\\\u0001"'),
        (
            CID.decode("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"),
            '{"/":"QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"}',
        ),
        (
            CID.compute(b"x", RAW),
            '{"/":"bafkreibnoelefnzgwbcacyt4vh52ymxvzbjq7mmqhtcnwarfq4lzegsiqe"}',
        ),
    ],
)
def test_known_encodings(value: Any, text: str) -> None:
    assert dagjson_encode(value) == text
    assert same(dagjson_decode(text), value)


def test_indent_pretty_prints_and_round_trips() -> None:
    value = {"z": [1, {"k": b"\x00"}], "a": {}, "e": []}
    text = dagjson_encode(value, indent=2)
    assert text == (
        '{\n  "a": {},\n  "e": [],\n  "z": [\n    1,\n    {\n      "k": {\n        "/": {\n'
        '          "bytes": "AA"\n        }\n      }\n    }\n  ]\n}'
    )
    assert dagjson_decode(text) == value


def test_decode_accepts_utf8_bytes() -> None:
    assert dagjson_decode('{"a":"é"}'.encode()) == {"a": "é"}


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ((1,), r"at \$: expected a list, found a tuple"),
        ({"a": {"/": "x"}}, r'at \$\.a: a map key "/" is reserved'),
        ({1: 2}, r"expected map keys to be str, found int"),
        ([math.nan], r"at \$\[0\]: expected a finite float"),
        (2**64, r"expected an integer in \[-2\*\*64, 2\*\*64 - 1\]"),
        ({"s": {1}}, r"at \$\.s: expected None, bool, int, float, str, bytes, list, dict or CID, found set"),
        ("\ud800", r"expected valid Unicode text"),
    ],
)
def test_encode_rejects(value: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        dagjson_encode(value)


def test_encode_rejects_cycles() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(InvalidInputError, match="levels of nesting"):
        dagjson_encode(cycle)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"at character 0: Expecting value"),
        ("[1,]", r"at character 3"),
        ('{"a":1}x', r"at character 7: Extra data"),
        ('{"b":1,"a":2}', r"out-of-order map key 'a'"),
        ('{"a":1,"a":2}', r"duplicate map key 'a'"),
        ('{"\\ud800":1}', r"expected valid Unicode map keys"),
        ('["\\udc00"]', r"at \$\[0\]: expected valid Unicode text"),
        ("NaN", r"found NaN"),
        ("[Infinity]", r"found Infinity"),
        ("1e400", r"expected a finite float, found 1e400"),
        ("18446744073709551616", r"expected an integer in \[-2\*\*64, 2\*\*64 - 1\]"),
        ("-18446744073709551617", r"expected an integer"),
        ('{"/":"nope"}', r"at \$: invalid link 'nope'"),
        ('{"a":{"/":"bafy"}}', r"at \$\.a: invalid link"),
        ('{"/":{"bytes":"oQ=="}}', r"expected unpadded standard base64 bytes"),
        ('{"/":{"bytes":"oR"}}', r"expected unpadded standard base64"),  # non-zero trailing bits
        ('{"/":{"bytes":"-_8"}}', r"expected unpadded standard base64"),  # URL-safe alphabet
        ('{"/":{"bytes":"a"}}', r"expected unpadded standard base64"),
        ('{"/":{"bytes":1}}', r'expected a map with key "/" to be a link'),
        ('{"/":{"bytes":"","x":1}}', r'expected a map with key "/" to be a link'),
        ('{"/":"bafkreibnoelefnzgwbcacyt4vh52ymxvzbjq7mmqhtcnwarfq4lzegsiqe","a":1}', r"to be a link"),
        ('{"/":1}', r"to be a link"),
    ],
)
def test_decode_rejects(text: str, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        dagjson_decode(text)


def test_decode_rejects_invalid_utf8_and_deep_nesting() -> None:
    with pytest.raises(DecodeError, match=r"at byte 1: expected UTF-8 text"):
        dagjson_decode(b'"\xff"')
    with pytest.raises(DecodeError, match="nesting deeper"):
        dagjson_decode("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(DecodeError, match="nesting deeper"):
        dagjson_decode("[" * 100_000 + "]" * 100_000)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_round_trip_and_agreement_with_dag_cbor(value: Any) -> None:
    text = dagjson_encode(value)
    back = dagjson_decode(text)
    assert same(back, value)
    assert dagjson_encode(back) == text
    assert same(dagjson_decode(dagjson_encode(value, indent=1)), value)
    # Both codecs describe the same IPLD value.
    assert same(dagcbor_decode(dagcbor_encode(back)), back)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=40), st.text(alphabet='{}[]":,/ 0123456789.e-abytesQ\\u', max_size=40)))
def test_random_text_raises_only_decode_error(text: str) -> None:
    try:
        value = dagjson_decode(text)
    except DecodeError:
        return
    assert same(dagjson_decode(dagjson_encode(value)), value)
