"""The trustless gateway of a real node process, over real HTTP."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from block_faults import tamper
from nodeproc import NodeProcess, cats, start_node

from cats_runtime.cas import (
    CID,
    GatewayBlockSource,
    MemoryBlockStore,
    Repo,
    add_bytes,
    add_path,
    cat,
    read_car,
)
from cats_runtime.cas._walk import walk
from cats_runtime.errors import IntegrityError

RAW = "application/vnd.ipld.raw"
CAR = "application/vnd.ipld.car"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, CID, CID, Path]]:
    base = tmp_path_factory.mktemp("gw")
    home = base / "node"
    data = base / "data"
    (data / "sub").mkdir(parents=True)
    (data / "big.bin").write_bytes(os.urandom(600_000))  # 3 leaves + a dag-pb root
    (data / "small.txt").write_bytes(b"hello mesh\n")
    (data / "sub" / "same.txt").write_bytes(b"hello mesh\n")  # a duplicate block in the DAG
    repo = Repo.open(home)
    root = add_path(data, repo.blocks).cid
    big = add_path(data / "big.bin", None).cid
    repo.pins.add(root)
    node = start_node(home)
    yield node, root, big, data
    node.stop()


def test_raw_block_has_the_spec_headers_and_verifies(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, root, _, _ = served
    r = httpx.get(f"{node.url}/ipfs/{root}", headers={"Accept": RAW})
    assert r.status_code == 200
    assert r.headers["content-type"] == RAW
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["etag"] == f'"{root}.raw"'
    assert "immutable" in r.headers["cache-control"]
    assert r.headers["content-disposition"] == f'attachment; filename="{root}.bin"'
    assert root.matches(r.content)


def test_format_query_wins_over_accept(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, root, _, _ = served
    r = httpx.get(f"{node.url}/ipfs/{root}?format=raw", headers={"Accept": CAR})
    assert r.headers["content-type"] == RAW


def test_car_streams_the_whole_dag_depth_first(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, root, _, _ = served
    r = httpx.get(f"{node.url}/ipfs/{root}", params={"format": "car", "dag-scope": "all"})
    assert r.status_code == 200
    assert r.headers["content-type"] == f"{CAR}; version=1; order=dfs; dups=n"
    assert r.headers["x-ipfs-roots"] == str(root)
    reader = read_car(io.BytesIO(r.content))
    assert reader.roots == (root,)
    got = [b.cid for b in reader]  # every block verified by the reader
    expected = [b.cid for b in walk(Repo.open(node.home).blocks, root)]
    assert got == expected
    assert len(got) == len(set(got))


def test_car_dups_y_repeats_duplicate_blocks(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, root, _, _ = served
    r = httpx.get(f"{node.url}/ipfs/{root}", headers={"Accept": f"{CAR}; version=1; order=dfs; dups=y"})
    assert r.headers["content-type"].endswith("dups=y")
    cids = [b.cid for b in read_car(io.BytesIO(r.content))]
    assert len(cids) == len(set(cids)) + 1  # hello mesh appears twice


def test_dag_scope_block_and_entity(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, root, big, _ = served
    block = httpx.get(f"{node.url}/ipfs/{root}?format=car&dag-scope=block")
    assert [b.cid for b in read_car(io.BytesIO(block.content))] == [root]
    directory = httpx.get(f"{node.url}/ipfs/{root}?format=car&dag-scope=entity")
    assert [b.cid for b in read_car(io.BytesIO(directory.content))] == [root]  # a directory lists itself
    file = httpx.get(f"{node.url}/ipfs/{big}?format=car&dag-scope=entity")
    assert len(list(read_car(io.BytesIO(file.content)))) == 4  # a file needs all of its blocks
    assert block.headers["etag"] != directory.headers["etag"]


def test_missing_block_is_404_and_412_when_only_if_cached(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, _, _, _ = served
    missing = CID.compute(b"nobody has this", 0x55)
    r = httpx.get(f"{node.url}/ipfs/{missing}?format=raw")
    assert r.status_code == 404
    assert r.json()["error"] == "BlockNotFoundError"
    assert r.headers["x-content-type-options"] == "nosniff"
    r = httpx.head(f"{node.url}/ipfs/{missing}?format=raw", headers={"Cache-Control": "only-if-cached"})
    assert r.status_code == 412


@pytest.mark.parametrize(
    ("path", "headers", "status", "match"),
    [
        ("/ipfs/not-a-cid?format=raw", {}, 400, "expected a CID, found"),
        ("/ipfs/bafkqaaa", {}, 400, "format=raw|car"),
        ("/ipfs/bafkqaaa", {"Accept": "text/html"}, 400, "verifiable"),
        ("/ipfs/bafkqaaa", {"Accept": f"{CAR}; version=2"}, 406, "version=1"),
        ("/ipfs/bafkqaaa?format=json", {}, 400, "format=raw or format=car"),
        ("/ipfs/bafkqaaa/a/path?format=car", {}, 400, "expected a directory"),
        ("/ipfs/bafkqaaa?format=car&dag-scope=most", {}, 400, "dag-scope"),
        ("/ipfs/bafkqaaa?format=car&entity-bytes=0:10", {}, 400, "entity-bytes"),
    ],
)
def test_bad_requests(
    served: tuple[NodeProcess, CID, CID, Path], path: str, headers: dict[str, str], status: int, match: str
) -> None:
    node, _, _, _ = served
    r = httpx.get(node.url + path, headers=headers)
    assert r.status_code == status, r.text
    assert match in r.json()["message"]


def test_head_and_conditional_requests(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, root, _, _ = served
    head = httpx.head(f"{node.url}/ipfs/{root}?format=raw")
    full = httpx.get(f"{node.url}/ipfs/{root}?format=raw")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(full.content))
    again = httpx.get(f"{node.url}/ipfs/{root}?format=raw", headers={"If-None-Match": full.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_probe_paths(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, _, _, _ = served
    raw = httpx.get(f"{node.url}/ipfs/bafkqaaa?format=raw")
    assert (raw.status_code, raw.content) == (200, b"")
    car = httpx.get(f"{node.url}/ipfs/bafkqaaa?format=car")
    assert read_car(io.BytesIO(car.content)).roots == (CID.decode("bafkqaaa"),)


def test_no_write_endpoint_for_blocks(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, _, _, _ = served
    assert httpx.post(f"{node.url}/blocks", content=b"x").status_code in (404, 405)
    assert httpx.put(f"{node.url}/ipfs/bafkqaaa", content=b"x").status_code == 405
    assert httpx.post(f"{node.url}/ipfs/bafkqaaa", content=b"x").status_code == 405


def test_openapi_is_published(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, _, _, _ = served
    spec = httpx.get(f"{node.url}/openapi.json").json()
    assert {
        "/orders",
        "/orders/{run_id}",
        "/ipfs/{cid}",
        "/boms/{cid}",
        "/invoices/{cid}",
        "/catalog",
    } <= set(spec["paths"])
    assert "application/vnd.ipld.car" in spec["paths"]["/orders"]["post"]["requestBody"]["content"]


def test_the_cas_gateway_client_reads_from_the_node(served: tuple[NodeProcess, CID, CID, Path]) -> None:
    node, root, big, data = served
    with GatewayBlockSource(node.url) as gateway:
        assert gateway.has(root)
        assert root.matches(gateway.get(root))
        store = MemoryBlockStore()
        store.put_many(gateway.fetch_car(big))
    assert b"".join(cat(store, big)) == (data / "big.bin").read_bytes()


def test_cats_fetch_copies_a_dag_between_homes(
    served: tuple[NodeProcess, CID, CID, Path], tmp_path: Path
) -> None:
    node, root, _, data = served
    other = tmp_path / "other"
    out = cats(other, "fetch", str(root), "--from", node.url, "--json")
    assert '"via": "car"' in out.stdout
    cats(other, "get", str(root), "-o", str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "big.bin").read_bytes() == (data / "big.bin").read_bytes()
    assert not Repo.open(other).blocks.verify()


def test_corrupt_local_blocks_are_refused_by_default_and_caught_by_clients_otherwise(tmp_path: Path) -> None:
    repo = Repo.open(tmp_path / "home")
    victim = add_bytes(b"will be corrupted", repo.blocks)
    tamper(repo.blocks, victim, b"will be CORRUPTED")
    with pytest.raises(IntegrityError, match="corrupt"):
        repo.blocks.get(victim)
    plain = start_node(tmp_path / "home", "--no-verify-reads")
    try:  # without read verification the node serves its files as they are: the client catches it
        with GatewayBlockSource(plain.url) as gateway, pytest.raises(IntegrityError, match=plain.url):
            gateway.get(victim)
    finally:
        plain.stop()
    strict = start_node(tmp_path / "home")
    try:  # by default the node re-hashes and refuses to serve it at all
        r = httpx.get(f"{strict.url}/ipfs/{victim}?format=raw")
        assert r.status_code == 500
        assert "corrupt" in r.json()["message"]
    finally:
        strict.stop()
