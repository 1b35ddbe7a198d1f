"""CIDs, multibase and varints — checked against the independent `multiformats` package."""

from __future__ import annotations

import hashlib
import re

import multiformats
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cats_runtime.cas import CID, DAG_CBOR, DAG_PB, RAW, Block, decode_varint, encode_varint
from cats_runtime.cas._multibase import multibase_decode, multibase_encode
from cats_runtime.errors import (
    CatsError,
    DecodeError,
    IntegrityError,
    InvalidCIDError,
    UnsupportedHashError,
)

EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
V0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"


def test_empty_raw_block_cid_is_the_well_known_one() -> None:
    assert str(CID.compute(b"")) == EMPTY_RAW


def test_v0_round_trip_and_v1_conversion() -> None:
    cid = CID.decode(V0)
    assert cid.version == 0 and cid.codec == DAG_PB
    assert str(cid) == V0
    v1 = cid.to_v1()
    assert v1.version == 1 and v1.digest == cid.digest
    assert str(v1) == str(multiformats.CID.decode(V0).set(version=1).set(base="base32"))


@given(st.binary(max_size=256), st.sampled_from([RAW, DAG_PB, DAG_CBOR, 0x0129, 0x0200]))
def test_text_and_binary_forms_match_multiformats(data: bytes, codec: int) -> None:
    ours = CID.compute(data, codec)
    theirs = multiformats.CID("base32", 1, codec, ("sha2-256", hashlib.sha256(data).digest()))
    assert str(ours) == str(theirs)
    assert bytes(ours) == bytes(theirs)
    assert CID.decode(str(theirs)) == ours
    assert CID.decode(theirs.encode("base58btc")) == ours
    assert CID.decode(theirs.encode("base36")) == ours
    assert CID.decode(bytes(theirs)) == ours
    assert ours.encode("base58btc") == theirs.encode("base58btc")


@given(st.binary(max_size=80))
def test_binary_decoder_never_crashes(raw: bytes) -> None:
    try:
        cid = CID.from_bytes(raw)
    except CatsError as exc:
        assert isinstance(exc, ValueError)  # noqa: PT017 (any CatsError is fine; a crash is not)
    else:
        assert CID.from_bytes(bytes(cid)) == cid


@given(st.text(max_size=80))
def test_text_decoder_never_crashes(text: str) -> None:
    try:
        CID.decode(text)
    except CatsError as exc:
        assert isinstance(exc, ValueError)  # noqa: PT017 (any CatsError is fine; a crash is not)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("hello", "multibase prefix"),
        ("bafy!!", r"expected a CID, found .bafy!!. \("),
        ("Qm" + "1" * 44, "CIDv0|digest|truncated|CID"),
        (EMPTY_RAW[:-3], "digest"),
        ("zzzzzzz", "CID"),
        # Valid multibase whose bytes are not a CID: the same message form as a bad prefix.
        ("bafyreinotacid", r"^expected a CID, found 'bafyreinotacid' \(expected a 33-byte digest"),
    ],
)
def test_malformed_cid_strings_give_clear_errors(text: str, match: str) -> None:
    with pytest.raises(InvalidCIDError, match=match):
        CID.decode(text)


def test_unknown_hash_function_parses_but_cannot_be_verified() -> None:
    raw = encode_varint(1) + encode_varint(RAW) + encode_varint(0x11) + encode_varint(20) + b"\0" * 20
    cid = CID.from_bytes(raw)
    assert cid.hash_name == "0x11"
    assert CID.decode(str(cid)) == cid
    with pytest.raises(UnsupportedHashError, match="found 0x11"):
        cid.verify(b"anything")
    with pytest.raises(UnsupportedHashError, match="found 0x11"):
        Block.checked(cid, b"anything")


def test_wrong_digest_length_is_refused() -> None:
    raw = encode_varint(1) + encode_varint(RAW) + encode_varint(0x12) + encode_varint(20) + b"\0" * 20
    with pytest.raises(InvalidCIDError, match="32-byte sha2-256 digest, found 20"):
        CID.from_bytes(raw)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(InvalidCIDError, match="trailing"):
        CID.from_bytes(bytes(CID.compute(b"x")) + b"\0")


def test_cid_is_immutable_and_hashable() -> None:
    cid = CID.compute(b"a")
    with pytest.raises(AttributeError, match="immutable"):
        cid._codec = 1  # type: ignore[misc]
    assert {cid: 1}[CID.decode(str(cid))] == 1


def test_verify_names_the_cid_and_source() -> None:
    cid = CID.compute(b"good")
    cid.verify(b"good")
    with pytest.raises(IntegrityError, match=re.escape(f"{cid} from disk is corrupt")):
        cid.verify(b"evil", source="disk")


def test_block_constructors_guarantee_a_match() -> None:
    block = Block.encode(b"abc")
    assert block.cid == CID.compute(b"abc")
    assert Block.checked(block.cid, b"abc").data == b"abc"
    with pytest.raises(IntegrityError):
        Block.checked(block.cid, b"abd")
    with pytest.raises(TypeError, match=r"Block\.encode"):
        Block(block.cid, b"abd")


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded) == (value, len(encoded))
    assert bytes(multiformats.varint.encode(value)) == encoded


@pytest.mark.parametrize(
    ("raw", "match"),
    [(b"", "truncated"), (b"\x80", "truncated"), (b"\x81\x00", "minimal"), (b"\xff" * 10, "at most 9")],
)
def test_varint_errors(raw: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_varint(raw)


@given(st.binary(max_size=64), st.sampled_from(["base32", "base58btc", "base36", "base16"]))
def test_multibase_round_trip(data: bytes, base: str) -> None:
    assert multibase_decode(multibase_encode(data, base)) == data
    assert multibase_encode(data, base) == multiformats.multibase.encode(data, base)


def _general_parse(raw: bytes) -> CID:
    # The general parser that from_bytes skips for the common sha2-256 forms.
    cid, end = CID.read(raw, 0)
    if end != len(raw):
        raise InvalidCIDError(f"expected a CID of {end} bytes, found {len(raw) - end} trailing bytes")
    return cid


@given(
    st.sampled_from([b"\x12\x20", b"\x01\x55\x12\x20", b"\x01\x70\x12\x20", b"\x01\x71\x12\x20"]),
    st.binary(min_size=32, max_size=32),
)
def test_the_fast_cid_path_equals_the_parser_and_multiformats(prefix: bytes, digest: bytes) -> None:
    raw = prefix + digest
    fast, parsed = CID.from_bytes(raw), _general_parse(raw)
    assert fast == parsed and hash(fast) == hash(parsed)
    fields = (fast.version, fast.codec, fast.hash_code, fast.digest, str(fast), bytes(fast))
    assert fields == (
        parsed.version,
        parsed.codec,
        parsed.hash_code,
        parsed.digest,
        str(parsed),
        bytes(parsed),
    )
    for form in (bytearray(raw), memoryview(raw)):  # any bytes-like form, as the parser takes
        assert CID.from_bytes(form) == fast  # type: ignore[arg-type]
    other = multiformats.CID.decode(raw)
    assert (fast.version, fast.codec, fast.digest, str(fast)) == (
        other.version,
        other.codec.code,
        bytes(other.raw_digest),
        other.encode("base32") if fast.version == 1 else str(other),
    )


@given(
    st.one_of(
        st.binary(max_size=40),
        # Near misses of the fast path: a known prefix with a digest one byte short or long.
        st.tuples(
            st.sampled_from([b"\x12\x20", b"\x01\x71\x12\x20", b"\x01\x71\x12\x21"]),
            st.binary(min_size=31, max_size=33),
        ).map(lambda t: t[0] + t[1]),
    )
)
def test_the_fast_cid_path_defers_anything_else_to_the_parser(raw: bytes) -> None:
    try:
        expected: CID | str = _general_parse(raw)
    except InvalidCIDError as exc:
        expected = str(exc)
    try:
        found: CID | str = CID.from_bytes(raw)
    except InvalidCIDError as exc:
        found = str(exc)
    assert found == expected


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


@given(
    st.sampled_from([b"\x01\x55\x12\x20", b"\x01\x70\x12\x20", b"\x01\x71\x12\x20"]),
    st.binary(min_size=32, max_size=32),
    st.sampled_from(_BASE32),
)
def test_canonical_base32_text_takes_the_fast_path_and_nothing_else_does(
    prefix: bytes, digest: bytes, last: str
) -> None:
    raw = prefix + digest
    text = multiformats.multibase.encode(raw, "base32")  # an independent encoder
    assert len(text) == 59
    cid = CID._from_canonical_base32(text)
    assert cid is not None and cid == CID.read(raw, 0)[0] and str(cid) == text == cid.encode()
    assert CID.decode(text) == cid and str(CID.decode(text)) == text
    # The last digit carries two padding bits: non-zero ones are not canonical, so the general
    # parser takes them (and reads the same bytes, as base64.b32decode ignores those bits).
    variant = text[:-1] + last
    fast = CID._from_canonical_base32(variant)
    general, _ = CID.read(multibase_decode(variant), 0)
    assert CID.decode(variant) == general
    if fast is None:
        assert _BASE32.index(last) & 3, f"canonical text {variant} refused by the fast path"
        assert str(CID.decode(variant)) == multibase_encode(general.buffer) != variant
    else:
        assert fast == general and str(fast) == variant


@pytest.mark.parametrize(
    "text",
    [
        "B" + EMPTY_RAW[1:].upper(),  # upper case: valid, not canonical
        EMPTY_RAW[:-1] + "1",  # not a base32 digit
        EMPTY_RAW[:-1] + "_",  # int() would take an underscore
        EMPTY_RAW[:10] + " " + EMPTY_RAW[11:],
        "b" + "a" * 58,  # zero bytes: no known prefix
    ],
)
def test_other_59_character_texts_take_the_general_parser(text: str) -> None:
    assert CID._from_canonical_base32(text) is None
    try:
        expected: CID | str = CID.from_bytes(multibase_decode(text))
    except InvalidCIDError as exc:
        expected = str(exc)
    try:
        found: CID | str = CID.decode(text)
    except InvalidCIDError as exc:
        found = str(exc)
    if isinstance(expected, CID):
        assert found == expected
    else:
        assert isinstance(found, str)
