"""The streamed directory builder: same blocks as the in-memory one, entries spilled to disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cats_runtime.cas import MemoryBlockStore, add_directory, add_path
from cats_runtime.cas._hamt import build_hamt, build_hamt_sorted, hamt_key
from cats_runtime.cas._unixfs_import import _check_options, _DirBuilder, _directory_node, _Node, _Sink
from cats_runtime.errors import InvalidInputError, LimitError

_NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    min_size=1,
    max_size=12,
).filter(lambda name: name not in (".", ".."))


def _entries(names: set[str], seed: int) -> list[tuple[bytes, _Node]]:
    out = []
    for i, name in enumerate(sorted(names)):
        digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
        prefix = b"\x01\x55\x12\x20" if i % 2 else b"\x01\x70\x12\x20"
        out.append((name.encode(), _Node(prefix + digest, (seed * 31 + i) % 100_000, 0)))
    return out


@settings(max_examples=120, deadline=None)
@given(
    names=st.sets(_NAMES, min_size=0, max_size=120),
    threshold=st.sampled_from([0, 40, 300, 1_500, 262_144]),
    strategy=st.sampled_from(["links-bytes", "block-bytes"]),
    version=st.sampled_from([0, 1]),
    seed=st.integers(0, 1_000),
    spill=st.sampled_from([0, 1, 7]),
)
def test_streamed_builder_gives_the_in_memory_cid_and_blocks(
    names: set[str], threshold: int, strategy: str, version: int, seed: int, spill: int
) -> None:
    # Across the sharding threshold (0 and 40 shard almost everything, 262144 nothing here),
    # with entries spilled to the temporary database after 0, 1 or 7 entries, in random order.
    opts = _check_options(version, 262_144, 174, threshold, strategy)  # type: ignore[arg-type]
    links = _entries(names, seed)
    expected_store, streamed_store = MemoryBlockStore(), MemoryBlockStore()
    with _Sink(expected_store) as sink:
        expected = _directory_node(links, sink, opts)
    shuffled = sorted(links, key=lambda item: hashlib.sha256(item[0] + bytes([seed % 256])).digest())
    with _Sink(streamed_store) as sink, _DirBuilder(sink, opts, unique=True, spill_entries=spill) as builder:
        for raw, node in shuffled:
            builder.add(raw, node, raw.decode())
        streamed = builder.finish()
    assert streamed == expected
    assert set(streamed_store) == set(expected_store)


@settings(max_examples=80, deadline=None)
@given(
    names=st.sets(st.binary(min_size=1, max_size=6), min_size=1, max_size=200),
    fanout=st.sampled_from([2, 4, 16, 256]),
)
def test_sorted_hamt_builder_equals_the_recursive_one(names: set[bytes], fanout: int) -> None:
    # Small fanouts make deep shard trees, so the streamed recursion is exercised at every depth.
    entries = [(name, b"\x01\x55\x12\x20" + hashlib.sha256(name).digest(), len(name)) for name in names]
    blocks_a: list[bytes] = []
    blocks_b: list[bytes] = []

    def emitter(out: list[bytes]):  # type: ignore[no-untyped-def]
        def emit(block: bytes) -> tuple[bytes, int]:
            out.append(block)
            return hashlib.sha256(block).digest(), len(block)

        return emit

    expected = build_hamt(entries, emitter(blocks_a), fanout)
    keyed = sorted((hamt_key(name), name, cid, tsize) for name, cid, tsize in entries)
    assert build_hamt_sorted(keyed, emitter(blocks_b), fanout) == expected
    assert sorted(blocks_b) == sorted(blocks_a)


def test_streamed_builder_refuses_a_full_key_collision() -> None:
    cid = b"\x01\x55\x12\x20" + bytes(32)
    key = hamt_key(b"a")
    with pytest.raises(LimitError, match="64 murmur3 bits"):
        build_hamt_sorted([(key, b"a", cid, 1), (key, b"b", cid, 1)], lambda block: (cid, len(block)))


def test_spilled_add_directory_refuses_duplicates_and_matches_add_path(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(6_000):  # above the spill limit and the 256 KiB threshold
        (tree / f"entry-with-a-longish-name-{i:05d}").touch()
    store = MemoryBlockStore()
    whole = add_path(tree, store)
    empty = add_path(tree / "entry-with-a-longish-name-00000", None).cid
    entries = [(name, empty, 0) for name in sorted(os.listdir(tree), reverse=True)]
    assert add_directory(iter(entries), None).cid == whole.cid
    with pytest.raises(InvalidInputError, match="twice"):
        add_directory([*entries, entries[0]], None)
