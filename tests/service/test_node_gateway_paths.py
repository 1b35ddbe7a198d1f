"""Content paths, entity-bytes and Content-Location on a real node's trustless gateway.

The cases follow the trustless gateway specification (specs.ipfs.tech/http-gateways/
trustless-gateway): each CAR is checked the way a verifying client checks it, by resolving the
path and reading the bytes from the CAR's own (hash-checked) blocks only.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import httpx
import pytest
from nodeproc import NodeProcess, start_node

from cats_runtime.cas import (
    CID,
    MemoryBlockStore,
    Repo,
    add_bytes,
    add_path,
    cat,
    read_car,
    resolve_path,
    stat,
)

CAR = "application/vnd.ipld.car"
Served = tuple[NodeProcess, CID, CID, bytes]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("gwp")
    data = base / "data"
    (data / "sub").mkdir(parents=True)
    (data / "hamt").mkdir()
    big = os.urandom(600_000)  # leaves of 262144, 262144 and 75712 bytes under a dag-pb root
    (data / "sub" / "big.bin").write_bytes(big)
    (data / "sub" / "small.txt").write_bytes(b"hello\n")
    for i in range(60):
        (data / "hamt" / f"entry-{i}").write_text(f"entry {i}\n")
    repo = Repo.open(base / "node")
    root = add_path(data, repo.blocks, shard_threshold=300).cid  # "hamt" is sharded, the rest flat
    hamt = add_path(data / "hamt", None, shard_threshold=300).cid
    repo.pins.add(root)
    node = start_node(base / "node")
    yield node, root, hamt, big
    node.stop()


def car_store(content: bytes) -> tuple[tuple[CID, ...], list[CID], MemoryBlockStore]:
    reader = read_car(io.BytesIO(content))
    store = MemoryBlockStore()
    order = []
    for block in reader:  # each block hash-checked by the reader
        store.put(block)
        order.append(block.cid)
    return reader.roots, order, store


def test_a_path_car_carries_the_blocks_that_verify_the_path(served: Served) -> None:
    node, root, _, big = served
    r = httpx.get(f"{node.url}/ipfs/{root}/sub/big.bin", params={"format": "car"})
    assert r.status_code == 200
    roots, order, store = car_store(r.content)
    assert roots == (root,)
    target, _ = resolve_path(store, root, ["sub", "big.bin"])  # only the CAR's blocks
    assert b"".join(cat(store, target)) == big
    sub = resolve_path(store, root, ["sub"])[0]
    assert order[:3] == [root, sub, target]  # path blocks first, then the file depth-first
    assert r.headers["x-ipfs-path"] == f"/ipfs/{root}/sub/big.bin"
    assert r.headers["x-ipfs-roots"] == f"{root},{sub},{target}"
    assert r.headers["content-disposition"] == f'attachment; filename="{target}.car"'
    assert "content-location" not in r.headers  # ?format= was given


def test_a_path_through_a_hamt_directory_sends_only_the_shards_on_the_way(served: Served) -> None:
    node, root, hamt, _ = served
    r = httpx.get(f"{node.url}/ipfs/{root}/hamt/entry-7", params={"format": "car", "dag-scope": "entity"})
    assert r.status_code == 200
    _, order, store = car_store(r.content)
    assert stat(store, hamt).sharded
    target, _ = resolve_path(store, root, ["hamt", "entry-7"])
    assert b"".join(cat(store, target)) == b"entry 7\n"
    assert len(order) < 10, "a lookup must not send the whole 60-entry directory"


def test_raw_with_a_path_is_the_terminal_block(served: Served) -> None:
    node, root, _, _ = served
    r = httpx.get(f"{node.url}/ipfs/{root}/sub/small.txt", params={"format": "raw"})
    assert r.status_code == 200 and r.content == b"hello\n"
    assert r.headers["etag"] == f'"{add_bytes(r.content, None)}.raw"'


@pytest.mark.parametrize(
    ("entity_bytes", "leaves"),
    [
        ("0:*", [0, 1, 2]),  # the whole file
        ("-1024:*", [2]),  # the last 1024 bytes
        ("262144:262144", [1]),  # one byte: the second leaf
        ("499:-1000", [0, 1, 2]),  # 500th byte to 1000 bytes before the end
        ("0:0", [0]),
        ("524287:524288", [1, 2]),  # straddles a leaf boundary
        ("-999999:10", [0]),  # a start before the file is clamped to 0
        ("100:999999999", [0, 1, 2]),  # an end past the file is clamped to its end
    ],
)
def test_entity_bytes_sends_the_blocks_covering_the_range(
    served: Served, entity_bytes: str, leaves: list[int]
) -> None:
    node, root, _, big = served
    url = f"{node.url}/ipfs/{root}/sub/big.bin"
    r = httpx.get(url, params={"format": "car", "entity-bytes": entity_bytes})
    assert r.status_code == 200, r.text
    _, order, store = car_store(r.content)
    whole = car_store(httpx.get(url, params={"format": "car"}).content)[1]
    file_root, all_leaves = whole[2], whole[3:]
    assert order[3:] == [all_leaves[i] for i in leaves] and order[2] == file_root
    start, _, end = entity_bytes.partition(":")
    lo = max(0, len(big) + int(start)) if int(start) < 0 else int(start)
    hi = (
        len(big) - 1 if end == "*" else (len(big) + int(end) if int(end) < 0 else min(int(end), len(big) - 1))
    )
    offsets = [0, 262_144, 524_288, 600_000]
    got = b"".join(store.get(c) for c in order[3:])
    assert big[offsets[leaves[0]] : offsets[leaves[-1] + 1]] == got
    assert got[lo - offsets[leaves[0]] : hi - offsets[leaves[0]] + 1] == big[lo : hi + 1]


def test_entity_bytes_edge_cases(served: Served) -> None:
    node, root, _, _ = served
    url = f"{node.url}/ipfs/{root}/sub/big.bin"
    outside = httpx.get(url, params={"format": "car", "entity-bytes": "600000:*"})
    assert outside.status_code == 400 and "inside the file" in outside.json()["message"]
    empty = httpx.get(url, params={"format": "car", "entity-bytes": "10:5"})
    assert empty.status_code == 200 and len(car_store(empty.content)[1]) == 3  # dag-scope=block
    for bad in ("5", "a:b", "1:", ":*", "1.5:*"):
        r = httpx.get(url, params={"format": "car", "entity-bytes": bad})
        assert r.status_code == 400, bad
    on_dir = httpx.get(f"{node.url}/ipfs/{root}/sub", params={"format": "car", "entity-bytes": "0:10"})
    assert on_dir.status_code == 200 and len(car_store(on_dir.content)[1]) == 2  # ignored: entity scope
    a = httpx.get(url, params={"format": "car", "entity-bytes": "0:10"}).headers["etag"]
    b = httpx.get(url, params={"format": "car", "entity-bytes": "0:11"}).headers["etag"]
    assert a != b


def test_content_location_when_accept_chose_the_format(served: Served) -> None:
    node, root, _, _ = served
    r = httpx.get(f"{node.url}/ipfs/{root}/sub", params={"dag-scope": "block"}, headers={"Accept": CAR})
    assert r.status_code == 200
    assert r.headers["content-location"] == f"/ipfs/{root}/sub?format=car&dag-scope=block"
    raw = httpx.get(f"{node.url}/ipfs/{root}", headers={"Accept": "application/vnd.ipld.raw"})
    assert raw.headers["content-location"] == f"/ipfs/{root}?format=raw"


def test_path_errors(served: Served) -> None:
    node, root, _, _ = served
    missing = httpx.get(f"{node.url}/ipfs/{root}/sub/nope", params={"format": "car"})
    assert missing.status_code == 404 and "'nope'" in missing.json()["message"]
    through_file = httpx.get(f"{node.url}/ipfs/{root}/sub/small.txt/x", params={"format": "car"})
    assert through_file.status_code == 400
    dotdot = httpx.get(f"{node.url}/ipfs/{root}/sub/%2E%2E/sub", params={"format": "car"})
    assert dotdot.status_code in (400, 404)


def test_a_deep_path_is_resolved_in_one_walk(tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    from cats_runtime.service import _gateway_routes

    deep = Path(tmp_path) / "d"
    segments = [f"s{i}" for i in range(64)]  # the deepest path the gateway accepts
    leaf_dir = deep.joinpath(*segments[:-1])
    leaf_dir.mkdir(parents=True)
    (leaf_dir / segments[-1]).write_bytes(b"at the bottom\n")
    store = MemoryBlockStore()
    root = add_path(deep, store).cid
    reads: list[CID] = []

    def read(cid: CID) -> bytes:
        reads.append(cid)
        return store.get(cid)

    target, traversed, logical = _gateway_routes._resolve(read, root, segments)
    # Each directory on the path is loaded once (resolving every prefix again from the root
    # loaded 64 * 65 / 2 = 2,080 of them).
    assert len(reads) == len(set(reads)) == 64
    assert (target, list(traversed)) == resolve_path(store, root, segments)
    assert list(logical) == [root] + [resolve_path(store, root, segments[: i + 1])[0] for i in range(64)]
