"""The UnixFS importer and exporter: API behaviour, safety rules, strict decoding, HAMT reading."""

from __future__ import annotations

import contextlib
import io
import os
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cats_runtime.cas import (
    CID,
    DAG_PB,
    HAMT_SHARDING_SIZE,
    RAW,
    Block,
    MemoryBlockStore,
    PBLink,
    PBNode,
    UnixFSData,
    UnixFSType,
    add_bytes,
    add_directory,
    add_path,
    add_stream,
    cat,
    decode_pbnode,
    decode_unixfs,
    encode_pbnode,
    encode_unixfs,
    get,
    links,
    ls,
    murmur3_x64_64,
    stat,
)
from cats_runtime.cas._hamt import murmur3_x64_128
from cats_runtime.errors import (
    BlockNotFoundError,
    CatsError,
    DecodeError,
    IntegrityError,
    InvalidInputError,
    StoreError,
    UnsafePathError,
    UnsupportedCodecError,
)

CHUNK = 262_144
EMPTY_V0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
SMALL = {"chunk_size": 100, "max_links": 3}


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def put_pb(store: MemoryBlockStore, links: tuple[PBLink, ...], unixfs: UnixFSData) -> CID:
    block = Block.encode(encode_pbnode(PBNode(links, encode_unixfs(unixfs))), DAG_PB)
    store.put(block)
    return block.cid


def put_raw(store: MemoryBlockStore, data: bytes) -> CID:
    block = Block.encode(data, RAW)
    store.put(block)
    return block.cid


# -- importer ---------------------------------------------------------------------------------
def test_well_known_empty_file_cids() -> None:
    assert str(add_bytes(b"", None)) == EMPTY_RAW
    assert str(add_bytes(b"", None, cid_version=0)) == EMPTY_V0


def test_small_file_v1_is_its_raw_block() -> None:
    data = b"hello world"
    assert add_bytes(data, None) == CID.compute(data, RAW)


@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 300, 301, 900, 901, 2701, 10_000])
@pytest.mark.parametrize("version", [0, 1])
def test_bytes_stream_and_path_agree_and_cat_back(size: int, version: int, tmp_path: Path) -> None:
    data = data_of(size, size)
    path = tmp_path / "f"
    path.write_bytes(data)
    stores = [MemoryBlockStore() for _ in range(3)]
    by_bytes = add_bytes(data, stores[0], cid_version=version, **SMALL)
    by_stream = add_stream(io.BytesIO(data), stores[1], cid_version=version, **SMALL)
    by_path = add_path(path, stores[2], cid_version=version, **SMALL)
    assert by_bytes == by_stream.cid == by_path.cid
    assert by_stream.size == by_path.size == size
    assert by_stream.dag_size == by_path.dag_size
    assert by_bytes.version == version
    for store in stores:
        assert b"".join(cat(store, by_bytes)) == data
    assert add_path(path, None, cid_version=version, **SMALL) == by_path


def test_only_hash_stores_nothing_and_store_gets_every_block(tmp_path: Path) -> None:
    data = data_of(1000)
    store = MemoryBlockStore()
    cid = add_bytes(data, store, **SMALL)
    assert cid == add_bytes(data, None, **SMALL)
    # 10 leaves + 4 parents + 2 grandparents + root.
    assert len(store) == 10 + 4 + 2 + 1


class Trickle(io.RawIOBase):
    """A stream that returns at most 7 bytes per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        piece = self._data.read(min(7, len(buffer)))
        buffer[: len(piece)] = piece
        return len(piece)


class ReadOnly:
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int) -> bytes:
        return self._data.read(n)


def test_short_reads_do_not_move_chunk_boundaries() -> None:
    data = data_of(CHUNK * 2 + 5)
    expected = add_bytes(data, None)
    assert add_stream(Trickle(data), None).cid == expected  # type: ignore[arg-type]
    assert add_stream(ReadOnly(data), None).cid == expected  # type: ignore[arg-type]


def test_large_stream_keeps_memory_flat() -> None:
    class Zeros(io.RawIOBase):
        def __init__(self, size: int) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    size = 96 << 20
    tracemalloc.start()
    try:
        result = add_stream(Zeros(size), None)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == size
    assert peak < 40 << 20, f"peak {peak} bytes for a {size}-byte stream"


def test_progress_counts_every_byte(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(data_of(CHUNK * 3 + 1))
    (tmp_path / "d" / "b").write_bytes(b"xyz")
    seen: list[int] = []
    result = add_path(tmp_path / "d", None, progress=seen.append)
    assert sum(seen) == result.size == CHUNK * 3 + 4
    stream_seen: list[int] = []
    add_stream(io.BytesIO(data_of(CHUNK * 20)), None, progress=stream_seen.append)
    assert sum(stream_seen) == CHUNK * 20


def test_dag_size_is_kubos_cumulative_size(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    result = add_stream(io.BytesIO(data_of(1000)), store, **SMALL)
    assert result.dag_size == stat(store, result.cid).cumulative_size
    total = sum(len(store.get(c)) for c in store)
    assert result.dag_size == total


def test_exclude_patterns_match_entry_names(tmp_path: Path) -> None:
    root = tmp_path / "code"
    (root / "__pycache__").mkdir(parents=True)
    (root / "__pycache__" / "m.pyc").write_bytes(b"x")
    (root / "m.py").write_text("print(1)\n")
    (root / "notes.PYC").write_text("kept: patterns are case-sensitive\n")
    store = MemoryBlockStore()
    cid = add_path(root, store, exclude=["__pycache__", "*.pyc"]).cid
    assert [e.name for e in ls(store, cid)] == ["m.py", "notes.PYC"]
    assert cid != add_path(root, None).cid


def symlink_target(store: MemoryBlockStore, cid: CID) -> bytes | None:
    fs = decode_unixfs(decode_pbnode(store.get(cid)).data or b"")
    assert fs.type == UnixFSType.SYMLINK
    return fs.data


def test_absolute_and_outside_symlinks_are_stored_verbatim_as_kubo_does(tmp_path: Path) -> None:
    # Kubo's `ipfs add -r` stores every symlink as a UnixFS Symlink node with its target bytes;
    # it never follows one, so a link to a secret adds the link, not the secret.
    root = tmp_path / "tree"
    root.mkdir()
    (tmp_path / "secret").write_text("no")
    os.symlink("../secret", root / "leak")
    os.symlink("/etc/passwd", root / "abs")
    store = MemoryBlockStore()
    cid = add_path(root, store).cid
    entries = {e.name: e for e in ls(store, cid)}
    assert symlink_target(store, entries["leak"].cid) == b"../secret"
    assert symlink_target(store, entries["abs"].cid) == b"/etc/passwd"
    assert add_path(root, None).cid == cid and len(ls(store, cid)) == 2  # the secret's bytes are no entry


def test_a_symlink_given_as_the_path_is_a_symlink_node(tmp_path: Path) -> None:
    # Kubo lstat()s its arguments: `ipfs add link` adds the link itself; `link/` what it points to.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    os.symlink("d", tmp_path / "link")
    store = MemoryBlockStore()
    result = add_path(tmp_path / "link", store)
    assert stat(store, result.cid).kind == "symlink"
    assert symlink_target(store, result.cid) == b"d"
    # (a str: pathlib drops the trailing slash)
    assert add_path(str(tmp_path / "link") + "/", None).cid == add_path(tmp_path / "d", None).cid


def test_hidden_entries_are_skipped_unless_asked_for(tmp_path: Path) -> None:
    root = tmp_path / ".tree"  # the root itself is never filtered, as in Kubo
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref")
    (root / "sub").mkdir()
    (root / "sub" / ".DS_Store").write_bytes(b"\0")
    (root / "a.txt").write_text("a")
    store = MemoryBlockStore()
    skipped = add_path(root, store)
    assert skipped.skipped_hidden == 2
    assert [e.name for e in ls(store, skipped.cid)] == ["a.txt", "sub"]
    assert ls(store, ls(store, skipped.cid)[1].cid) == []
    full = add_path(root, store, hidden=True)
    assert full.skipped_hidden == 0
    assert [e.name for e in ls(store, full.cid)] == [".git", "a.txt", "sub"]


def test_symlinks_inside_become_unixfs_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "a").write_text("a")
    os.symlink("../a", root / "sub" / "up")
    os.symlink("missing", root / "dangling")
    store = MemoryBlockStore()
    cid = add_path(root, store).cid
    entries = {e.name: e for e in ls(store, cid)}
    assert entries["dangling"].kind == "symlink" and entries["dangling"].size == len("missing")
    sub = ls(store, entries["sub"].cid)
    assert sub[0].kind == "symlink"
    assert decode_unixfs(decode_pbnode(store.get(sub[0].cid)).data or b"") == UnixFSData(
        UnixFSType.SYMLINK, b"../a"
    )


def test_special_files_and_missing_paths_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    os.mkfifo(root / "fifo")
    with pytest.raises(InvalidInputError, match="special file"):
        add_path(root, None)
    with pytest.raises(InvalidInputError, match="found nothing"):
        add_path(tmp_path / "nope", None)


def test_non_utf8_names_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / os.fsdecode(b"bad\xff")).write_text("x")
    with pytest.raises(InvalidInputError, match="UTF-8"):
        add_path(root, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cid_version": 2}, "cid_version 0 or 1"),
        ({"chunk_size": 0}, "chunk size"),
        ({"chunk_size": (1 << 20) + 1}, "chunk size"),
        ({"max_links": 1}, "max_links"),
    ],
)
def test_bad_options(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        add_bytes(b"x", None, **kwargs)


def test_bad_shard_threshold(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="shard threshold"):
        add_path(tmp_path, None, shard_threshold=-1)


def test_directory_links_sorted_by_name_bytes(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    for name in ["b", "B", "a", "é", "Z", "_"]:
        (root / name).write_text(name)
    store = MemoryBlockStore()
    cid = add_path(root, store).cid
    names = [link.name for link in decode_pbnode(store.get(cid)).links]
    assert names == sorted(names, key=lambda n: (n or "").encode())
    assert names == ["B", "Z", "_", "a", "b", "é"]


def test_large_directory_is_sharded_above_kubos_threshold(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    for i in range(60):
        (root / f"file-{i:03d}").write_text(str(i))
    store = MemoryBlockStore()
    flat = add_path(root, store).cid
    sharded = add_path(root, store, shard_threshold=100).cid
    assert not stat(store, flat).sharded
    info = stat(store, sharded)
    assert info.sharded and info.kind == "directory"
    assert ls(store, flat) == ls(store, sharded)


# -- exporter ---------------------------------------------------------------------------------
def make_tree(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "a.txt").write_text("hello\n")
    (root / "empty").write_bytes(b"")
    (root / "sub" / "big").write_bytes(data_of(CHUNK + 1000))
    (root / "sub" / "deep" / "ünï.txt").write_text("unicode")
    os.symlink("../a.txt", root / "sub" / "up")
    os.symlink("sub/deep", root / "deep-link")


def tree_snapshot(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = p.read_bytes()
    return out


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("threshold", [262_144, 10])
def test_get_round_trips_a_tree(version: int, threshold: int, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    store = MemoryBlockStore()
    cid = add_path(src, store, cid_version=version, shard_threshold=threshold).cid
    written: list[int] = []
    get(store, cid, tmp_path / "out", progress=written.append)
    assert tree_snapshot(tmp_path / "out") == tree_snapshot(src)
    assert sum(written) == CHUNK + 1000 + 6 + 7


def test_get_into_empty_directory_and_refusals(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    store = MemoryBlockStore()
    cid = add_path(src, store).cid
    (tmp_path / "empty").mkdir()
    get(store, cid, tmp_path / "empty")
    assert (tmp_path / "empty" / "a.txt").read_text() == "hello\n"
    with pytest.raises(InvalidInputError, match="not to exist"):
        get(store, cid, tmp_path / "empty")
    file_cid = add_bytes(b"data", store)
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(InvalidInputError, match="not to exist"):
        get(store, file_cid, tmp_path / "taken")
    assert (tmp_path / "taken").read_text() == "mine"
    (tmp_path / "emptydir2").mkdir()
    with pytest.raises(InvalidInputError, match="not to exist"):
        get(store, file_cid, tmp_path / "emptydir2")
    get(store, file_cid, tmp_path / "file-out")
    assert (tmp_path / "file-out").read_bytes() == b"data"


def dir_with(store: MemoryBlockStore, entries: dict[str, CID]) -> CID:
    links = tuple(PBLink(cid, name, 1) for name, cid in sorted(entries.items()))
    return put_pb(store, links, UnixFSData(UnixFSType.DIRECTORY))


def symlink(store: MemoryBlockStore, target: bytes) -> CID:
    return put_pb(store, (), UnixFSData(UnixFSType.SYMLINK, target))


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", "nul\x00", ""])
def test_get_refuses_unsafe_names(name: str, tmp_path: Path) -> None:
    store = MemoryBlockStore()
    root = dir_with(store, {name: put_raw(store, b"evil")})
    with pytest.raises(UnsafePathError, match="plain entry name"):
        get(store, root, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (b"/etc/passwd", "absolute"),
        (b"../../outside", "outside the target"),
        (b"..", "outside the target"),
        (b"", "non-empty"),
        (b"a\\..\\..", "non-empty symlink target without"),
        (b"\xff", "UTF-8"),
    ],
)
def test_get_refuses_escaping_symlinks(target: bytes, message: str, tmp_path: Path) -> None:
    store = MemoryBlockStore()
    root = dir_with(store, {"l": symlink(store, target)})
    with pytest.raises(UnsafePathError, match=message):
        get(store, root, tmp_path / "out")


def test_get_refuses_symlinks_escaping_through_each_other(tmp_path: Path) -> None:
    # d/s -> "." makes d/s/.. the root, so d/t -> "s/../.." is lexically inside but really outside.
    store = MemoryBlockStore()
    d = dir_with(store, {"s": symlink(store, b"."), "t": symlink(store, b"s/../..")})
    root = dir_with(store, {"d": d})
    with pytest.raises(UnsafePathError, match="through other symlinks"):
        get(store, root, tmp_path / "out")
    assert not (tmp_path / "out" / "d" / "t").is_symlink()


def test_get_refuses_a_lone_symlink_and_duplicate_names(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    with pytest.raises(UnsafePathError, match="lone symlink"):
        get(store, symlink(store, b"x"), tmp_path / "l")
    leaf = put_raw(store, b"x")
    links = (PBLink(leaf, "same", 1), PBLink(leaf, "same", 1))
    root = put_pb(store, links, UnixFSData(UnixFSType.DIRECTORY))
    with pytest.raises(DecodeError, match="unique entry names"):
        get(store, root, tmp_path / "dup")


def leaves_of(store: MemoryBlockStore, cid: CID) -> list[CID]:
    # The file's leaves in file order (depth-first, left to right).
    if cid.codec == RAW:
        return [cid]
    links = decode_pbnode(store.get(cid)).links
    return [leaf for link in links for leaf in leaves_of(store, link.cid)] if links else [cid]


@pytest.mark.parametrize("version", [0, 1])
def test_get_writes_a_multi_level_file_byte_identical(version: int, tmp_path: Path) -> None:
    store = MemoryBlockStore()
    data = data_of(5000, seed=version)
    cid = add_bytes(data, store, cid_version=version, **SMALL)  # 50 leaves under 4 levels of nodes
    root_links = decode_pbnode(store.get(cid)).links
    assert decode_pbnode(store.get(root_links[0].cid)).links  # really more than one level
    written: list[int] = []
    get(store, cid, tmp_path / "out", progress=written.append)
    assert (tmp_path / "out").read_bytes() == data
    assert sum(written) == len(data)


def corrupt_middle_leaf(store: MemoryBlockStore, cid: CID) -> CID:
    leaves = leaves_of(store, cid)
    leaf = leaves[len(leaves) // 2]
    store._blocks[leaf] = b"tampered"
    return leaf


def test_get_fails_on_a_corrupt_middle_leaf_and_leaves_no_partial_file(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    data = data_of(200_000)
    cid = add_bytes(data, store, chunk_size=1000, max_links=8)  # 200 leaves, 3 levels
    corrupt_middle_leaf(store, cid)
    written: list[int] = []
    with pytest.raises(IntegrityError, match="corrupt"):
        get(store, cid, tmp_path / "out", progress=written.append)
    assert 0 < sum(written) < len(data)  # the first half was written before the bad leaf...
    assert not os.path.lexists(tmp_path / "out")  # ...and removed with the rest
    assert list(tmp_path.iterdir()) == []


def test_get_removes_the_partial_file_on_missing_blocks_and_wrong_sizes(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    data = data_of(20_000)
    cid = add_bytes(data, store, chunk_size=1000, max_links=4)
    leaves = leaves_of(store, cid)
    saved = store._blocks.pop(leaves[-1])
    with pytest.raises(BlockNotFoundError):
        get(store, cid, tmp_path / "missing")
    assert not os.path.lexists(tmp_path / "missing")
    store._blocks[leaves[-1]] = saved
    # A node whose last blocksize claims one byte more than its raw leaf holds.
    good = put_raw(store, b"x" * 10)
    short = put_raw(store, b"y" * 9)
    lying = put_pb(
        store, (PBLink(good, "", 10), PBLink(short, "", 9)), UnixFSData(UnixFSType.FILE, None, 21, (10, 11))
    )
    with pytest.raises(DecodeError, match="expected 11 bytes in raw leaf"):
        get(store, lying, tmp_path / "lying")
    assert not os.path.lexists(tmp_path / "lying")


def test_get_removes_the_partial_file_when_interrupted_or_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryBlockStore()
    cid = add_bytes(data_of(20_000), store, chunk_size=1000, max_links=4)

    def interrupt(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get(store, cid, tmp_path / "interrupted", progress=interrupt)
    assert not os.path.lexists(tmp_path / "interrupted")

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StoreError, match=r"cannot write .*full: No space left on device"):
        get(store, cid, tmp_path / "full")
    monkeypatch.undo()
    assert not os.path.lexists(tmp_path / "full")


def test_get_of_a_tree_removes_only_the_file_that_failed(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    good = add_bytes(b"fine", store)
    bad = add_bytes(data_of(20_000), store, chunk_size=1000, max_links=4)
    corrupt_middle_leaf(store, bad)
    root = dir_with(store, {"a-good": good, "b-bad": bad})
    with pytest.raises(IntegrityError, match="corrupt"):
        get(store, root, tmp_path / "out")
    assert (tmp_path / "out" / "a-good").read_bytes() == b"fine"  # entries already done stay
    assert not os.path.lexists(tmp_path / "out" / "b-bad")


def test_cat_checks_sizes_and_types(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    leaf = put_raw(store, b"abc")
    lying = put_pb(store, (PBLink(leaf, "", 3),), UnixFSData(UnixFSType.FILE, filesize=4, blocksizes=(4,)))
    with pytest.raises(DecodeError, match="expected 4 bytes in raw leaf"):
        b"".join(cat(store, lying))
    bad_total = put_pb(
        store, (PBLink(leaf, "", 3),), UnixFSData(UnixFSType.FILE, filesize=9, blocksizes=(3,))
    )
    with pytest.raises(DecodeError, match="filesize 3"):
        b"".join(cat(store, bad_total))
    missing_sizes = put_pb(store, (PBLink(leaf, "", 3),), UnixFSData(UnixFSType.FILE, filesize=0))
    with pytest.raises(DecodeError, match="one blocksize per link"):
        b"".join(cat(store, missing_sizes))
    dir_inside = put_pb(
        store,
        (PBLink(put_pb(store, (), UnixFSData(UnixFSType.DIRECTORY)), "", 4),),
        UnixFSData(UnixFSType.FILE, filesize=0, blocksizes=(0,)),
    )
    with pytest.raises(DecodeError, match="UnixFS File inside a file"):
        b"".join(cat(store, dir_inside))
    with pytest.raises(InvalidInputError, match="found a directory"):
        cat(store, dir_with(store, {}))
    with pytest.raises(InvalidInputError, match="expected a UnixFS directory"):
        ls(store, leaf)
    no_data = Block.encode(encode_pbnode(PBNode()), DAG_PB)
    store.put(no_data)
    with pytest.raises(DecodeError, match="expected UnixFS Data"):
        stat(store, no_data.cid)
    cbor = CID.compute(b"\xa0", 0x71)
    with pytest.raises(UnsupportedCodecError, match="dag-cbor"):
        cat(store, cbor)
    metadata = put_pb(store, (), UnixFSData(UnixFSType.METADATA))
    with pytest.raises(DecodeError, match="Metadata"):
        stat(store, metadata)


def test_cat_detects_missing_and_corrupt_blocks() -> None:
    store = MemoryBlockStore()
    cid = add_bytes(data_of(1000), store, **SMALL)
    leaf = decode_pbnode(store.get(decode_pbnode(store.get(cid)).links[0].cid)).links[0].cid
    store._blocks[leaf] = b"tampered"
    with pytest.raises(IntegrityError, match="corrupt"):
        b"".join(cat(store, cid))
    del store._blocks[leaf]
    with pytest.raises(BlockNotFoundError):
        b"".join(cat(store, cid))


def test_cat_reads_inline_data_and_unixfs_raw_leaves() -> None:
    # Older importers put data in the root next to links, and used UnixFS Raw leaves.
    store = MemoryBlockStore()
    raw_leaf = put_pb(store, (), UnixFSData(UnixFSType.RAW, b"world", filesize=5))
    root = put_pb(store, (PBLink(raw_leaf, "", 10),), UnixFSData(UnixFSType.FILE, b"hello ", 11, (5,)))
    assert b"".join(cat(store, root)) == b"hello world"
    assert stat(store, root).size == 11


def test_ls_and_stat(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    store = MemoryBlockStore()
    result = add_path(src, store)
    entries = {e.name: e for e in ls(store, result.cid)}
    assert set(entries) == {"a.txt", "deep-link", "empty", "empty-dir", "sub"}
    assert (entries["a.txt"].kind, entries["a.txt"].size) == ("file", 6)
    assert entries["deep-link"].kind == "symlink"
    assert entries["sub"].kind == "directory"
    info = stat(store, result.cid)
    assert info.kind == "directory" and info.links == 5 and not info.sharded
    assert info.cumulative_size == result.dag_size == info.size
    big = stat(store, {e.name: e for e in ls(store, entries["sub"].cid)}["big"].cid)
    assert (big.kind, big.size, big.links) == ("file", CHUNK + 1000, 2)
    raw = stat(store, add_bytes(b"xyz", store))
    assert (raw.kind, raw.size, raw.links, raw.block_size) == ("file", 3, 0, 3)


# -- UnixFS Data codec ------------------------------------------------------------------------
def test_unixfs_encoding_matches_kubo_bytes() -> None:
    assert encode_unixfs(UnixFSData(UnixFSType.DIRECTORY)) == b"\x08\x01"
    assert encode_unixfs(UnixFSData(UnixFSType.FILE, filesize=0)) == b"\x08\x02\x18\x00"
    # blocksizes are repeated, not packed: one tag per value.
    assert (
        encode_unixfs(UnixFSData(UnixFSType.FILE, filesize=3, blocksizes=(1, 2)))
        == b"\x08\x02\x18\x03\x20\x01\x20\x02"
    )
    full = UnixFSData(UnixFSType.HAMT_SHARD, b"\x01", None, (), 0x22, 256, 0o755, (-5, 7))
    assert decode_unixfs(encode_unixfs(full)) == full


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "Data.Type"),
        (b"\x08\x09", "UnixFS type in"),
        (b"\x08\x02\x08\x02", "ascending order"),
        (b"\x18\x00\x08\x02", "ascending order"),
        (b"\x08\x02\x22\x00", "wire type 0"),
        (b"\x08\x02\x48\x00", "unknown field 9"),
        (b"\x08\x02\x38\xff\xff\xff\xff\x1f", "uint32"),
        (b"\x08\x02\x42\x00", "Seconds"),
        (b"\x08\x02\x42\x02\x15\x00", "truncated"),
        (b"\x08\x02\x42\x03\x10\x00\x00", "wire type 5"),
        (b"\x08\x02\x42\x04\x08\x01\x08\x01", "UnixTime fields"),
    ],
)
def test_unixfs_decoder_rejects(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_unixfs(data)


def test_unixfs_encoder_rejects_out_of_range() -> None:
    with pytest.raises(InvalidInputError, match="UnixFS type"):
        encode_unixfs(UnixFSData(9))
    with pytest.raises(InvalidInputError, match="uint32"):
        encode_unixfs(UnixFSData(2, mode=1 << 32))
    with pytest.raises(InvalidInputError, match="int64"):
        encode_unixfs(UnixFSData(2, mtime=(1 << 63, None)))
    with pytest.raises(InvalidInputError, match="fixed32"):
        encode_unixfs(UnixFSData(2, mtime=(0, 1 << 32)))


u64 = st.integers(0, (1 << 64) - 1)
unixfs_values = st.builds(
    UnixFSData,
    st.integers(0, 5),
    st.one_of(st.none(), st.binary(max_size=20)),
    st.one_of(st.none(), u64),
    st.lists(u64, max_size=4).map(tuple),
    st.one_of(st.none(), u64),
    st.one_of(st.none(), u64),
    st.one_of(st.none(), st.integers(0, (1 << 32) - 1)),
    st.one_of(
        st.none(),
        st.tuples(
            st.integers(-(1 << 63), (1 << 63) - 1), st.one_of(st.none(), st.integers(0, (1 << 32) - 1))
        ),
    ),
)


@given(unixfs_values)
def test_unixfs_round_trip(value: UnixFSData) -> None:
    encoded = encode_unixfs(value)
    assert decode_unixfs(encoded) == value
    assert encode_unixfs(decode_unixfs(encoded)) == encoded


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_unixfs_random_bytes_raise_only_decode_errors(data: bytes) -> None:
    try:
        value = decode_unixfs(data)
    except DecodeError:
        return
    assert encode_unixfs(value) == data


def random_store_dag(data: bytes) -> tuple[MemoryBlockStore, CID]:
    # A root whose Data and links come from fuzz bytes, pointing at real blocks.
    store = MemoryBlockStore()
    leaf = put_raw(store, b"leaf")
    sub = put_pb(store, (), UnixFSData(UnixFSType.DIRECTORY))
    links = tuple(PBLink([leaf, sub][b % 2], f"{b:02X}" + "x" * (b % 3), b) for b in data[:4])
    block = Block.encode(encode_pbnode(PBNode(links, data[4:])), DAG_PB)
    store.put(block)
    return store, block.cid


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=60))
def test_exporter_on_random_nodes_raises_only_cats_errors(
    data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store, cid = random_store_dag(data)
    for op in (lambda: b"".join(cat(store, cid)), lambda: ls(store, cid), lambda: stat(store, cid)):
        with contextlib.suppress(CatsError):  # anything else (IndexError, ...) fails the test
            op()
    with contextlib.suppress(CatsError):
        get(store, cid, tmp_path_factory.mktemp("fuzz") / "out")


# -- HAMT -------------------------------------------------------------------------------------
def test_murmur3_reference_values() -> None:
    # Austin Appleby's MurmurHash3_x64_128, seed 0 (same values as the npm @multiformats/murmur3).
    assert murmur3_x64_128(b"") == (0, 0)
    assert murmur3_x64_128(b"hello") == (0xCBD8A7B341BD9B02, 0x5B1E906A48AE1D19)
    fox = b"The quick brown fox jumps over the lazy dog"
    assert murmur3_x64_128(fox) == (0xE34BBC7BBC071B6C, 0x7A433CA9C49A9347)
    assert murmur3_x64_64(b"hello") == bytes.fromhex("cbd8a7b341bd9b02")


@given(st.binary(max_size=100))
def test_the_hamt_key_is_h1_big_endian_for_any_name(name: bytes) -> None:
    # murmur3_x64_64 takes h1 out of the 16-byte digest by hand: check it against the integers.
    assert murmur3_x64_64(name) == murmur3_x64_128(name)[0].to_bytes(8, "big")


def shard(store: MemoryBlockStore, links: tuple[PBLink, ...], bitfield: int, **kw: int) -> CID:
    data = bitfield.to_bytes((bitfield.bit_length() + 7) // 8, "big")
    fields = {"hash_type": 0x22, "fanout": 256} | kw
    return put_pb(store, links, UnixFSData(UnixFSType.HAMT_SHARD, data or None, **fields))


def slot(name: str) -> int:
    return murmur3_x64_64(name.encode())[0]


def test_hamt_reader_checks_slots_bitfield_and_parameters() -> None:
    store = MemoryBlockStore()
    leaf = put_raw(store, b"x")
    good = shard(store, (PBLink(leaf, f"{slot('a'):02X}a", 1),), 1 << slot("a"))
    assert [e.name for e in ls(store, good)] == ["a"]
    wrong = (slot("a") + 1) % 256
    with pytest.raises(DecodeError, match="does not match its hash"):
        ls(store, shard(store, (PBLink(leaf, f"{wrong:02X}a", 1),), 1 << wrong))
    with pytest.raises(DecodeError, match="bitfield"):
        ls(store, shard(store, (PBLink(leaf, f"{slot('a'):02X}a", 1),), 1 << wrong))
    with pytest.raises(DecodeError, match="hex digits"):
        ls(store, shard(store, (PBLink(leaf, "zza", 1),), 1))
    with pytest.raises(DecodeError, match="fanout"):
        ls(store, shard(store, (), 0, fanout=100))
    with pytest.raises(DecodeError, match="hashType"):
        ls(store, shard(store, (), 0, hash_type=0x12))
    with pytest.raises(DecodeError, match="sub-shard"):
        ls(store, shard(store, (PBLink(leaf, "00", 1),), 1))
    assert ls(store, shard(store, (), 0)) == []


@pytest.mark.parametrize("threshold", [HAMT_SHARDING_SIZE, 64])
def test_add_directory_from_links_equals_add_path(tmp_path: Path, threshold: int) -> None:
    # Assembling a directory from existing entries (map-mode output merging) must give exactly
    # the CID `ipfs add -r` gives the same tree, flat or HAMT-sharded.
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(40):
        (tree / f"f{i:02d}.txt").write_text(f"entry {i}\n" * (i + 1))
    (tree / "sub").mkdir()
    (tree / "sub" / "x").write_text("x")
    store = MemoryBlockStore()
    whole = add_path(tree, store, shard_threshold=threshold)
    entries = [(name, link.cid, link.tsize or 0) for name, link in links(store, whole.cid)]
    assert len(entries) == 41
    rebuilt = add_directory(list(reversed(entries)), store, shard_threshold=threshold)
    assert rebuilt.cid == whole.cid
    assert rebuilt.dag_size == whole.dag_size
    with pytest.raises(InvalidInputError, match="twice"):
        add_directory([*entries, entries[0]], store)
    with pytest.raises(UnsafePathError, match="plain entry name"):
        add_directory([("../x", entries[0][1], 1)], store)


def test_get_verbatim_symlinks_writes_links_as_stored_and_never_through_them(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    outside = tmp_path / "outside"
    d = dir_with(store, {"f": put_raw(store, b"data")})
    root = dir_with(
        store,
        {
            "abs": symlink(store, str(outside).encode()),
            "up": symlink(store, b"../../outside"),
            "d": d,
            "s": symlink(store, b"d/f"),
        },
    )
    with pytest.raises(UnsafePathError, match="verbatim"):
        get(store, root, tmp_path / "refused")
    get(store, root, tmp_path / "out" / "tree", verbatim_symlinks=True)
    out = tmp_path / "out" / "tree"
    assert os.readlink(out / "abs") == str(outside)
    assert os.readlink(out / "up") == "../../outside"
    assert (out / "s").read_bytes() == b"data"
    assert not outside.exists(), "nothing is written through a link"
    get(store, symlink(store, b"/etc/hostname"), tmp_path / "lone", verbatim_symlinks=True)
    assert os.readlink(tmp_path / "lone") == "/etc/hostname"
