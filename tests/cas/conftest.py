"""Fixtures for the CAS tests: temporary block stores and repositories, small DAG builders."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from cats_runtime.cas import (
    DAG_CBOR,
    DAG_PB,
    RAW,
    Block,
    FSBlockStore,
    PBLink,
    PBNode,
    Repo,
    dagcbor_encode,
    encode_pbnode,
)


@pytest.fixture
def tmp_store(tmp_path: Path) -> FSBlockStore:
    """An empty FSBlockStore in a temporary directory."""
    return FSBlockStore(tmp_path / "blocks")


@pytest.fixture
def tmp_repo(tmp_path: Path) -> Repo:
    """An empty CATs repository in a temporary directory."""
    return Repo.open(tmp_path / "repo")


def raw_block(data: bytes) -> Block:
    """A raw (codec 0x55) CIDv1 block."""
    return Block.encode(data, RAW)


def pb_block(children: Iterable[Block], *, version: int = 1, data: bytes | None = b"\x08\x01") -> Block:
    """A dag-pb node linking to ``children`` in order (names "0", "1"... keep them sorted)."""
    links = tuple(PBLink(child.cid, f"{i:04d}", len(child.data)) for i, child in enumerate(children))
    return Block.encode(encode_pbnode(PBNode(links, data)), DAG_PB, version=version)


def cbor_block(value: object) -> Block:
    """A DAG-CBOR block."""
    return Block.encode(dagcbor_encode(value), DAG_CBOR)


class Dag:
    """A small mixed DAG and the order ``ipfs dag export`` would write it in.

    root (dag-cbor) -> [pb_a, pb_b, leaf0]; pb_a -> [leaf0, leaf1]; pb_b (CIDv0) -> [leaf2, pb_a]
    (leaf0 and pb_a are shared: each appears once, at its first visit).
    """

    def __init__(self, tag: bytes = b"") -> None:
        self.leaf0 = raw_block(b"leaf zero" + tag)
        self.leaf1 = raw_block(b"leaf one" + tag)
        self.leaf2 = raw_block(b"leaf two" + tag)
        self.pb_a = pb_block([self.leaf0, self.leaf1])
        self.pb_b = pb_block([self.leaf2, self.pb_a], version=0)
        self.root = cbor_block({"a": self.pb_a.cid, "b": [self.pb_b.cid, self.leaf0.cid], "n": 1})
        self.export_order = [self.root, self.pb_a, self.leaf0, self.leaf1, self.pb_b, self.leaf2]
        self.blocks = list(self.export_order)


class Kit:
    """Block builders handed to tests through the ``kit`` fixture (conftest is not importable)."""

    raw = staticmethod(raw_block)
    pb = staticmethod(pb_block)
    cbor = staticmethod(cbor_block)
    Dag = Dag


@pytest.fixture
def kit() -> type[Kit]:
    """Block and DAG builders."""
    return Kit


@pytest.fixture
def dag() -> Dag:
    """A small DAG mixing dag-cbor, dag-pb (CIDv0 and CIDv1) and raw blocks."""
    return Dag()
