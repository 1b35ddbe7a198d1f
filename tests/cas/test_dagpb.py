"""The dag-pb codec: Kubo-identical encoding and a strict decoder (ipld.io DAG-PB spec)."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cats_runtime.cas import CID, DAG_PB, RAW, PBLink, PBNode, decode_pbnode, encode_pbnode
from cats_runtime.errors import DecodeError, InvalidInputError

RAW_CID = CID.compute(b"leaf", RAW)
PB_CID = CID.compute(b"node", DAG_PB)
V0_CID = CID.compute(b"node", DAG_PB, version=0)


def test_empty_node_is_empty_bytes_and_the_well_known_cid() -> None:
    assert encode_pbnode(PBNode()) == b""
    assert decode_pbnode(b"") == PBNode((), None)
    # The spec's fixture: the empty dag-pb node.
    assert str(CID.compute(b"", DAG_PB)) == "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_empty_unixfs_directory_is_kubos() -> None:
    block = encode_pbnode(PBNode((), b"\x08\x01"))
    assert block == b"\x0a\x02\x08\x01"
    assert str(CID.compute(block, DAG_PB, version=0)) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


def test_links_are_written_before_data_with_empty_name_and_tsize() -> None:
    node = PBNode((PBLink(RAW_CID, "", 4),), b"\x08\x02")
    block = encode_pbnode(node)
    cid = RAW_CID.buffer
    link = b"\x0a" + bytes([len(cid)]) + cid + b"\x12\x00" + b"\x18\x04"
    assert block == b"\x12" + bytes([len(link)]) + link + b"\x0a\x02\x08\x02"
    assert decode_pbnode(block) == node


def test_absent_and_empty_fields_differ() -> None:
    absent = encode_pbnode(PBNode((PBLink(RAW_CID),), None))
    empty = encode_pbnode(PBNode((PBLink(RAW_CID, "", 0),), b""))
    assert absent != empty
    assert decode_pbnode(absent).links[0] == PBLink(RAW_CID, None, None)
    assert decode_pbnode(empty) == PBNode((PBLink(RAW_CID, "", 0),), b"")


def test_encoder_sorts_links_by_name_bytes_stably() -> None:
    links = (PBLink(RAW_CID, "b"), PBLink(PB_CID, "a"), PBLink(V0_CID, "B"), PBLink(RAW_CID, "a"))
    decoded = decode_pbnode(encode_pbnode(PBNode(links)))
    assert [(link.name, link.cid) for link in decoded.links] == [
        ("B", V0_CID),
        ("a", PB_CID),
        ("a", RAW_CID),
        ("b", RAW_CID),
    ]


def test_unsorted_links_are_accepted_on_decode() -> None:
    def raw_link(name: bytes) -> bytes:
        body = b"\x0a" + bytes([len(RAW_CID.buffer)]) + RAW_CID.buffer + b"\x12" + bytes([len(name)]) + name
        return b"\x12" + bytes([len(body)]) + body

    node = decode_pbnode(raw_link(b"z") + raw_link(b"a"))
    assert [link.name for link in node.links] == ["z", "a"]


def test_v0_link_hash() -> None:
    node = PBNode((PBLink(V0_CID, "x", 1),))
    assert decode_pbnode(encode_pbnode(node)) == node


def _link(body: bytes) -> bytes:
    return b"\x12" + bytes([len(body)]) + body


HASH = b"\x0a" + bytes([len(RAW_CID.buffer)]) + RAW_CID.buffer


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\x00\x12\x00", "nothing after PBNode.Data"),
        (b"\x0a\x00\x0a\x00", "nothing after PBNode.Data"),
        (b"\x1a\x00", "unknown field 3"),
        (b"\x08\x00", "wire type 2, found wire type 0"),
        (b"\x12\x00", "PBLink.Hash"),
        (_link(b"\x12\x00"), "PBLink.Hash"),
        (_link(b"\x12\x00" + HASH), "in order"),
        (_link(HASH + HASH), "in order"),
        (_link(HASH + b"\x18\x01\x12\x00"), "in order"),
        (_link(HASH + b"\x20\x01"), "unknown field 4"),
        (_link(HASH + b"\x1a\x00"), "Tsize with wire type 0"),
        (_link(HASH + b"\x10\x00"), "wire type 2"),
        (_link(HASH + b"\x12\x01\xff"), "UTF-8"),
        (_link(b"\x0a\x03\x01\x55\x12"), "expected a CID"),
        (b"\x0a\x05ab", "expected 5 bytes"),
        (b"\x0a", "truncated"),
        (b"\x0a\x80\x00", "minimal"),
        (b"\x0a" + b"\xff" * 10 + b"\x01", "at most 10 bytes"),
        (_link(HASH + b"\x18" + b"\xff" * 9 + b"\x7f"), "below 2\\*\\*64"),
    ],
)
def test_strict_decoder_rejects(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_pbnode(data)


def test_encoder_rejects_out_of_range_tsize() -> None:
    with pytest.raises(InvalidInputError, match="non-negative"):
        encode_pbnode(PBNode((PBLink(RAW_CID, "", -1),)))
    with pytest.raises(InvalidInputError, match="below 2\\*\\*64"):
        encode_pbnode(PBNode((PBLink(RAW_CID, "", 1 << 64),)))


cids = st.sampled_from([RAW_CID, PB_CID, V0_CID, CID.compute(b"x", 0x71)])
links = st.builds(
    PBLink,
    cids,
    st.one_of(st.none(), st.text(max_size=12)),
    st.one_of(st.none(), st.integers(0, (1 << 64) - 1)),
)
nodes = st.builds(
    PBNode, st.lists(links, max_size=6).map(tuple), st.one_of(st.none(), st.binary(max_size=40))
)


@given(nodes)
def test_round_trip(node: PBNode) -> None:
    block = encode_pbnode(node)
    decoded = decode_pbnode(block)
    key = lambda link: b"" if link.name is None else link.name.encode()  # noqa: E731
    assert decoded.data == node.data
    assert list(decoded.links) == sorted(node.links, key=key)
    assert encode_pbnode(decoded) == block


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_errors(data: bytes) -> None:
    try:
        node = decode_pbnode(data)
    except DecodeError:
        return
    # Whatever decodes re-encodes to the same bytes when its links are in canonical order.
    names = [b"" if link.name is None else link.name.encode() for link in node.links]
    if names == sorted(names):
        assert encode_pbnode(node) == data


@settings(max_examples=300)
@given(nodes, st.data())
def test_mutated_blocks_raise_only_decode_errors(node: PBNode, data: st.DataObject) -> None:
    block = bytearray(encode_pbnode(node))
    if block:
        i = data.draw(st.integers(0, len(block) - 1))
        block[i] = data.draw(st.integers(0, 255))
        block = block[: data.draw(st.integers(0, len(block)))]
    with contextlib.suppress(DecodeError):  # anything else fails the test
        decode_pbnode(bytes(block))


def test_kubo_file_node_bytes() -> None:
    # A two-leaf raw-leaves file root, as `ipfs add --cid-version=1` writes it.
    a = CID.compute(b"a" * 3, RAW)
    b = CID.compute(b"b" * 2, RAW)
    data = b"\x08\x02\x18\x05\x20\x03\x20\x02"
    block = encode_pbnode(PBNode((PBLink(a, "", 3), PBLink(b, "", 2)), data))
    expected = b"".join(
        b"\x12" + bytes([len(body)]) + body
        for body in (b"\x0a\x24" + c.buffer + b"\x12\x00\x18" + bytes([n]) for c, n in ((a, 3), (b, 2)))
    )
    assert block == expected + b"\x0a\x08" + data
    assert hashlib.sha256(block).digest() == CID.compute(block, DAG_PB).digest
