"""An independent verifying client fetches content paths and byte ranges from a real node.

The client is tests/oracle/gateway-client.mjs (npm @ipld/car, multiformats, ipfs-unixfs-exporter):
it re-hashes every block of each CAR, resolves the path through the CAR's own dag-pb and HAMT
blocks, reads the terminus in the asked scope with the trustless gateway specification's
``entity-bytes`` semantics, and reports the bytes it could verify, any block it needed and did not
get and any block it got and did not need (the spec: "only the minimal set of blocks necessary to
verify the specified byte range"). These tests compare what it read with the original files.
A client that resolves paths itself (@helia/verified-fetch) would not exercise the node's path
handling; this one asks the node for the path and checks its answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from block_faults import tamper
from nodeproc import NodeProcess, start_node

from cats_runtime.cas import CID, Repo, add_path, decode_pbnode, resolve_path, stat

pytestmark = pytest.mark.oracle

ORACLE_DIR = Path(__file__).resolve().parents[1] / "oracle"
CLIENT = ORACLE_DIR / "gateway-client.mjs"
NODE = shutil.which("node")
if NODE is None or not (ORACLE_DIR / "node_modules" / "ipfs-unixfs-exporter").is_dir():
    pytest.skip(
        "npm verifying client absent: needs node and `npm ci` in tests/oracle (run .ci/install-oracles.sh)",
        allow_module_level=True,
    )

DEEP_SIZE = 100_000  # 4096-byte leaves, 8 per node: 25 leaves under 4 inner nodes under the root
LEAF, INNER = 4096, 8 * 4096
HAMT_ENTRIES = 1000  # 240-byte names: (240 + 36) * 1000 bytes of links, over the 256 KiB estimate
# Looked up in the HAMT by the hash of their UTF-8 bytes, and percent-encoded in the URL.
ODD_NAMES = ["\u00fcn\u00ef \u00df.txt", "per%cent?.txt", "hash#tag&amp.txt", "\u65e5\u672c"]
Result = dict[str, Any]


def hamt_name(i: int) -> str:
    return f"{i:04d}-" + "x" * 235


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_tree(data: Path) -> dict[str, bytes]:
    """The test tree on disk; returns every file's bytes by relative path."""
    files = {
        "a/b/deep.bin": os.urandom(DEEP_SIZE),
        "a/b/dup.txt": b"the same bytes twice\n",
        "a/dup.txt": b"the same bytes twice\n",
        "a/sp ace/\u00fcn\u00ef.txt": "\u00fcn\u00efcode path\n".encode(),
        "hamt/inner/note.txt": b"inside a sharded directory\n",
    }
    files.update({f"hamt/{name}": name.encode() for name in ODD_NAMES})
    files.update({f"hamt/{hamt_name(i)}": f"entry {i}\n".encode() for i in range(HAMT_ENTRIES)})
    for rel, content in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(content)
    return files


class Served:
    """The running node, the roots it holds (by CID version) and the original files."""

    def __init__(self, node: NodeProcess, roots: dict[int, CID], files: dict[str, bytes]) -> None:
        self.node, self.roots, self.files = node, roots, files

    def run(self, requests: list[dict[str, Any]]) -> dict[str, Result]:
        """Ask the independent client; one node.js process for a batch of requests."""
        assert NODE is not None
        proc = subprocess.run(
            [NODE, str(CLIENT)],
            input=json.dumps({"base": self.node.url, "requests": requests}),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ORACLE_DIR,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        results: dict[str, Result] = json.loads(proc.stdout)
        return results


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("vclient")
    files = make_tree(base / "data")
    repo = Repo.open(base / "node")
    roots = {}
    for version in (1, 0):  # CIDv1 with raw leaves, and plain `ipfs add` (dag-pb leaves)
        roots[version] = add_path(
            base / "data", repo.blocks, cid_version=version, chunk_size=LEAF, max_links=8
        ).cid
        repo.pins.add(roots[version])
        hamt = resolve_path(repo.blocks, roots[version], ["hamt"])[0]
        assert stat(repo.blocks, hamt).sharded, "the test needs a directory over the HAMT threshold"
    node = start_node(base / "node")
    yield Served(node, roots, files)
    node.stop()


def request(
    served: Served, rid: str, path: str, version: int = 1, fmt: str = "car", **params: str
) -> dict[str, Any]:
    return {
        "id": rid,
        "root": str(served.roots[version]),
        "path": [s for s in path.split("/") if s],
        "format": fmt,
        "params": {k.replace("_", "-"): v for k, v in params.items()},
    }


def assert_verified(result: Result, served: Served, version: int, path: str) -> None:
    """The CAR verified, held every block needed and no other, in the order it claims."""
    assert result["status"] == 200, result
    assert result["error"] is None, result["error"]
    assert result["unused"] == [], "the CAR carries blocks the request did not need"
    assert result.get("order_ok"), "the blocks are not in the depth-first order Content-Type claims"
    assert result["duplicates"] == []
    assert result["car_roots"] == [str(served.roots[version])]
    segments = [s for s in path.split("/") if s]
    assert result["path_cids"][0] == str(served.roots[version])
    assert len(result["path_cids"]) == len(segments) + 1


# (entity-bytes, the bytes the specification says it names, as a Python slice of the file)
RANGES = [
    ("0:*", slice(0, None)),  # the whole file
    ("-1024:*", slice(-1024, None)),  # the last 1024 bytes
    ("499:-1000", slice(499, DEEP_SIZE - 1000 + 1)),  # 500th byte to 1000 bytes before the end
    ("0:0", slice(0, 1)),
    ("0:4095", slice(0, LEAF)),  # exactly the first leaf
    ("4095:4096", slice(LEAF - 1, LEAF + 1)),  # across a leaf boundary
    ("4096:8191", slice(LEAF, 2 * LEAF)),  # exactly the second leaf
    ("32767:32768", slice(INNER - 1, INNER + 1)),  # across an inner node boundary
    ("32768:65535", slice(INNER, 2 * INNER)),  # exactly the second inner node
    ("-1:*", slice(-1, None)),  # the last byte
    (f"{DEEP_SIZE - 1}:{DEEP_SIZE - 1}", slice(-1, None)),
    ("-1696:-1", slice(DEEP_SIZE - 1696, None)),  # exactly the short last leaf
    ("-1697:-1697", slice(DEEP_SIZE - 1697, DEEP_SIZE - 1696)),  # the byte before it
    ("50000:999999999", slice(50_000, None)),  # an end past the file is clamped
    ("-999999:10", slice(0, 11)),  # a start before the file is clamped to 0
]
EMPTY_RANGES = ["10:5", "-10:-20", "5:-99999"]  # zero-length: the answer is dag-scope=block


@pytest.fixture(scope="module")
def results(served: Served) -> dict[str, Result]:
    reqs = [
        request(served, f"range {v} {eb}", "a/b/deep.bin", v, entity_bytes=eb)
        for v in (1, 0)
        for eb, _ in RANGES
    ]
    reqs += [request(served, f"empty {eb}", "a/b/deep.bin", entity_bytes=eb) for eb in EMPTY_RANGES]
    reqs += [
        request(served, f"range-scope {eb}", "a/b/deep.bin", entity_bytes=eb, dag_scope="entity")
        for eb in ("0:*", "4095:4096")
    ]
    for v in (1, 0):
        for scope in ("all", "entity", "block"):
            reqs.append(request(served, f"file {v} {scope}", "a/b/deep.bin", v, dag_scope=scope))
            reqs.append(request(served, f"hamt {v} {scope}", "hamt", v, dag_scope=scope))
        reqs.append(request(served, f"unicode {v}", "a/sp ace/\u00fcn\u00ef.txt", v))
        reqs.append(request(served, f"dir all {v}", "a", v))
        reqs.append(request(served, f"root all {v}", "", v))
        reqs.append(request(served, f"inner {v}", "hamt/inner/note.txt", v))
        reqs += [
            request(served, f"hamt entry {v} {i}", f"hamt/{hamt_name(i)}", v, dag_scope="entity")
            for i in (0, 7, 500, 999)
        ]
        reqs.append(request(served, f"hamt range {v}", f"hamt/{hamt_name(7)}", v, entity_bytes="2:4"))
        reqs += [request(served, f"odd {v} {name}", f"hamt/{name}", v) for name in ODD_NAMES]
        reqs.append(request(served, f"dir range {v}", "a", v, entity_bytes="0:10"))
        for path in ("a/sp ace/\u00fcn\u00ef.txt", f"hamt/{hamt_name(500)}", "a/b/deep.bin"):
            reqs.append(request(served, f"raw {v} {path}", path, v, fmt="raw"))
    reqs.append(request(served, "outside", "a/b/deep.bin", entity_bytes=f"{DEEP_SIZE}:*"))
    return served.run(reqs)


@pytest.mark.parametrize("version", [1, 0])
@pytest.mark.parametrize(("entity_bytes", "wanted"), RANGES, ids=[r[0] for r in RANGES])
def test_entity_bytes_gives_exactly_the_blocks_of_the_range(
    served: Served, results: dict[str, Result], version: int, entity_bytes: str, wanted: slice
) -> None:
    r = results[f"range {version} {entity_bytes}"]
    assert_verified(r, served, version, "a/b/deep.bin")
    deep = served.files["a/b/deep.bin"]
    lo, hi = r["range"]
    assert (lo, hi + 1) == wanted.indices(DEEP_SIZE)[:2], "the client read another range than the spec names"
    assert r["bytes"] == {"sha256": sha(deep[wanted]), "length": len(deep[wanted])}


def test_a_range_uses_few_blocks_and_dag_scope_entity_is_implied(results: dict[str, Result]) -> None:
    # Minimality is checked block by block above; here the sizes make it visible.
    whole = results["file 1 entity"]["blocks"]
    assert whole == 3 + 1 + 4 + 25  # root, a, b; file root, inner nodes, leaves
    assert results["range 1 0:0"]["blocks"] == 3 + 1 + 1 + 1  # path, file root, first inner, leaf
    assert results["range 1 32767:32768"]["blocks"] == 3 + 1 + 2 + 2
    for eb in ("0:*", "4095:4096"):
        implied, explicit = results[f"range 1 {eb}"], results[f"range-scope {eb}"]
        assert implied["bytes"] == explicit["bytes"] and implied["blocks"] == explicit["blocks"]


@pytest.mark.parametrize("entity_bytes", EMPTY_RANGES)
def test_an_empty_range_answers_the_file_root_block(
    served: Served, results: dict[str, Result], entity_bytes: str
) -> None:
    r = results[f"empty {entity_bytes}"]
    assert_verified(r, served, 1, "a/b/deep.bin")
    assert r["range"] is None and "bytes" not in r
    assert r["terminus"]["size"] == DEEP_SIZE  # the root block tells the client why it is empty
    assert r["blocks"] == 3 + 1


def test_a_range_entirely_outside_the_file_is_400(results: dict[str, Result]) -> None:
    r = results["outside"]
    assert r["status"] == 400 and "inside the file" in r["body"]


@pytest.mark.parametrize("version", [1, 0])
def test_dag_scopes_of_a_file_and_of_a_hamt_directory(
    served: Served, results: dict[str, Result], version: int
) -> None:
    deep = served.files["a/b/deep.bin"]
    for scope in ("all", "entity"):
        r = results[f"file {version} {scope}"]
        assert_verified(r, served, version, "a/b/deep.bin")
        assert r["bytes"] == {"sha256": sha(deep), "length": DEEP_SIZE}
    block = results[f"file {version} block"]
    assert_verified(block, served, version, "a/b/deep.bin")
    assert block["blocks"] == 4 and block["terminus"]["size"] == DEEP_SIZE
    names = sorted([*(hamt_name(i) for i in range(HAMT_ENTRIES)), "inner", *ODD_NAMES])
    entity = results[f"hamt {version} entity"]
    assert_verified(entity, served, version, "hamt")  # unused == []: the shards, not the entries
    assert [name for name, _ in entity["entries"]] == names
    assert entity["blocks"] > 2, "a HAMT of a thousand entries has sub-shards"
    assert_verified(results[f"hamt {version} block"], served, version, "hamt")
    assert results[f"hamt {version} block"]["blocks"] == 2
    everything = results[f"hamt {version} all"]
    assert_verified(everything, served, version, "hamt")
    hamt_files = {rel[len("hamt/") :]: sha(b) for rel, b in served.files.items() if rel.startswith("hamt/")}
    assert everything["tree"] == hamt_files


@pytest.mark.parametrize("version", [1, 0])
def test_paths_through_nested_and_sharded_directories(
    served: Served, results: dict[str, Result], version: int
) -> None:
    for i in (0, 7, 500, 999):
        r = results[f"hamt entry {version} {i}"]
        assert_verified(r, served, version, f"hamt/{hamt_name(i)}")
        assert r["bytes"]["sha256"] == sha(f"entry {i}\n".encode())
    depths = {results[f"hamt entry {version} {i}"]["path_blocks"] for i in (0, 7, 500, 999)}
    assert max(depths) >= 3, "no lookup went through a sub-shard: the test would miss a missing shard"
    inner = results[f"inner {version}"]
    assert_verified(inner, served, version, "hamt/inner/note.txt")
    assert inner["bytes"]["sha256"] == sha(served.files["hamt/inner/note.txt"])
    assert inner["headers"]["x-ipfs-path"] == f"/ipfs/{served.roots[version]}/hamt/inner/note.txt"
    ranged = results[f"hamt range {version}"]
    assert_verified(ranged, served, version, f"hamt/{hamt_name(7)}")
    assert ranged["bytes"]["sha256"] == sha(b"try")
    for name in ODD_NAMES:
        odd = results[f"odd {version} {name}"]
        assert_verified(odd, served, version, f"hamt/{name}")
        assert odd["bytes"]["sha256"] == sha(name.encode())
    uni = results[f"unicode {version}"]
    assert_verified(uni, served, version, "a/sp ace/\u00fcn\u00ef.txt")
    assert uni["bytes"]["sha256"] == sha(served.files["a/sp ace/\u00fcn\u00ef.txt"])


@pytest.mark.parametrize("version", [1, 0])
def test_whole_directories_and_entity_bytes_ignored_on_a_directory(
    served: Served, results: dict[str, Result], version: int
) -> None:
    a = results[f"dir all {version}"]
    assert_verified(a, served, version, "a")  # dup.txt twice in the tree, once in the CAR
    assert a["tree"] == {rel[2:]: sha(b) for rel, b in served.files.items() if rel.startswith("a/")}
    root = results[f"root all {version}"]
    assert_verified(root, served, version, "")
    assert root["tree"] == {rel: sha(b) for rel, b in served.files.items()}
    on_dir = results[f"dir range {version}"]
    assert_verified(on_dir, served, version, "a")
    assert [name for name, _ in on_dir["entries"]] == ["b", "dup.txt", "sp ace"]


@pytest.mark.parametrize("version", [1, 0])
def test_raw_of_a_path_is_the_block_the_verified_path_names(
    served: Served, results: dict[str, Result], version: int
) -> None:
    for path in ("a/sp ace/\u00fcn\u00ef.txt", f"hamt/{hamt_name(500)}"):
        r = results[f"raw {version} {path}"]
        assert r["status"] == 200 and r["error"] is None, r
        assert r["bytes"]["sha256"] == sha(served.files[path])
    multi = results[f"raw {version} a/b/deep.bin"]
    assert multi["status"] == 200 and multi["error"] is None, multi
    assert multi["bytes"] is None  # the file's root block: links, not the bytes


def test_etags_tell_every_variant_apart(results: dict[str, Result]) -> None:
    tags = [
        r["headers"]["etag"]
        for rid, r in results.items()
        if rid.startswith(("range 1 ", "file 1 ", "empty "))
    ]
    assert len(tags) == len(set(tags))


def test_the_client_refuses_a_corrupt_block_and_a_car_cut_short(tmp_path: Path) -> None:
    # One leaf flipped on disk. A node that serves block files as they are (--no-verify-reads)
    # sends it: the client must name the block, not hand back wrong bytes. A node that re-hashes
    # (the default) ends the CAR before it: the client must see the CAR is incomplete.
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(3 * LEAF))
    repo = Repo.open(tmp_path / "node")
    root = add_path(src, repo.blocks, chunk_size=LEAF).cid
    repo.pins.add(root)
    second = decode_pbnode(repo.blocks.get(root)).links[1].cid
    tamper(repo.blocks, second, b"X" + repo.blocks.get(second)[1:])
    asks = [("all", {}), ("range", {"entity_bytes": f"{LEAF}:{LEAF}"}), ("first", {"entity_bytes": "0:10"})]
    out = {}
    for mode in ("--no-verify-reads", "--verify-reads"):
        node = start_node(tmp_path / "node", mode)
        try:
            served = Served(node, {1: root}, {})
            out[mode] = served.run([request(served, rid, "", **params) for rid, params in asks])
        finally:
            node.stop()
    for rid in ("all", "range"):
        lying, cut = out["--no-verify-reads"][rid], out["--verify-reads"][rid]
        assert lying["status"] == 200 and lying["bad_blocks"] == [str(second)], lying
        assert f"block {second} does not hash to its CID" in lying["error"]
        assert cut["status"] == 200 and cut["bad_blocks"] == [], cut
        assert f"block {second} is needed but not in the CAR" in cut["error"]
        assert "bytes" not in lying and "bytes" not in cut
    for mode in out:  # the range avoids the bad leaf: it is not sent
        assert out[mode]["first"]["error"] is None
