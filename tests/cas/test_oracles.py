"""CATs' UnixFS CIDs against two independent implementations, run live.

- npm ``ipfs-unixfs-importer`` (tests/oracle, installed by ``.ci/install-oracles.sh``): its
  defaults are ``ipfs add --cid-version=1``; profile ``unixfs-v0-2015`` is plain ``ipfs add``.
- Debian ``ipfs-cid`` (``/usr/bin/ipfs_cid FILE``): Kubo's default CIDv0 for one file.

Each test skips with the reason when its oracle is not installed; the fixed vectors in
``test_unixfs_vectors.py`` still run then.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_unixfs_vectors import CASES, add_options, content, materialize

from cats_runtime.cas import CID, Block, MemoryBlockStore, add_path, cat, get, ls, stat

pytestmark = pytest.mark.oracle

ORACLE_DIR = Path(__file__).resolve().parent.parent / "oracle"
SCRIPT = ORACLE_DIR / "unixfs-cid.mjs"
NODE = shutil.which("node")
IPFS_CID = shutil.which("ipfs_cid")
FLAGS = {"chunk_size": "--chunk", "max_links": "--max-links", "shard_threshold": "--shard-threshold"}

needs_npm = pytest.mark.skipif(
    NODE is None or not (ORACLE_DIR / "node_modules" / "ipfs-unixfs-importer").is_dir(),
    reason="npm oracle absent: needs node and `npm ci` in tests/oracle (run .ci/install-oracles.sh)",
)
needs_ipfs_cid = pytest.mark.skipif(
    IPFS_CID is None,
    reason="Debian ipfs-cid absent (apt-get install ipfs-cid, or run .ci/install-oracles.sh)",
)


def npm_oracle(
    path: Path, options: dict[str, int], *, v0: bool, blocks: bool = False, profile: str | None = None
) -> dict[str, Any]:
    assert NODE is not None
    cmd = [NODE, str(SCRIPT), str(path)]
    if v0:
        cmd.append("--v0")
    if profile is not None:
        cmd += ["--profile", profile]
    if blocks:
        cmd.append("--blocks")
    for key, value in options.items():
        cmd += [FLAGS[key], str(value)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def ipfs_cid_v0(path: Path) -> str:
    assert IPFS_CID is not None
    out = subprocess.run(
        [IPFS_CID, str(path)], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    cid: str = json.loads(out)["CIDv0"]
    return cid


@needs_npm
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_vectors_match_the_npm_importer(case: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "root"
    materialize(case["tree"], root)
    options = add_options(case)
    for version in (1, 0):
        theirs = npm_oracle(root, options, v0=version == 0)["cid"]
        ours = str(add_path(root, None, cid_version=version, hidden=True, **options).cid)
        assert ours == theirs, f"CIDv{version} differs from the npm importer"
        assert theirs == case[f"cid_v{version}"], "tests/data/unixfs_vectors.json is stale: regenerate it"


@needs_ipfs_cid
@pytest.mark.parametrize(
    "case", [c for c in CASES if "file" in c["tree"] and not c.get("options")], ids=lambda c: c["name"]
)
def test_file_vectors_match_debian_ipfs_cid(case: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(content(case["tree"]["file"]))
    assert str(add_path(path, None, cid_version=0).cid) == ipfs_cid_v0(path) == case["cid_v0"]


@needs_ipfs_cid
@pytest.mark.parametrize("seed", range(4))
def test_random_sizes_match_debian_ipfs_cid(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    size = rng.choice([rng.randrange(0, 300_000), rng.randrange(262_144 * 2, 262_144 * 6)])
    path = tmp_path / "f"
    path.write_bytes(rng.randbytes(size))
    assert str(add_path(path, None, cid_version=0).cid) == ipfs_cid_v0(path)


@needs_npm
@pytest.mark.parametrize("seed", range(3))
def test_random_trees_match_the_npm_importer(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    root = tmp_path / "root"
    root.mkdir()
    dirs = [root]
    for i in range(rng.randrange(5, 40)):
        parent = rng.choice(dirs)
        name = rng.choice(["f", "F", "é", "ß", "_", ".h", "日本", "z z"]) + str(i)
        if rng.random() < 0.25:
            (parent / name).mkdir()
            dirs.append(parent / name)
        else:
            (parent / name).write_bytes(rng.randbytes(rng.choice([0, 1, 50, 3000])))
    options = {"chunk_size": rng.choice([64, 1000]), "max_links": rng.choice([2, 5]), "shard_threshold": 300}
    for version in (1, 0):
        theirs = npm_oracle(root, options, v0=version == 0)["cid"]
        assert str(add_path(root, None, cid_version=version, hidden=True, **options).cid) == theirs


@needs_npm
@pytest.mark.parametrize("version", [1, 0])
def test_hamt_reader_reads_the_npm_importers_shards(version: int, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(400):
        (src / f"entry-{i}.txt").write_text(f"content {i}")
    (src / "sub" / "inner").write_text("nested")
    os.symlink("entry-1.txt", src / "alias")
    out = npm_oracle(src, {"shard_threshold": 1000}, v0=version == 0, blocks=True)
    store = MemoryBlockStore()
    for cid_text, data in out["blocks"].items():
        store.put(Block.checked(CID.decode(cid_text), base64.b64decode(data)))
    root = CID.decode(out["cid"])
    info = stat(store, root)
    assert info.sharded and info.cumulative_size == out["size"]
    entries = {e.name: e for e in ls(store, root)}
    assert len(entries) == 402
    assert b"".join(cat(store, entries["entry-7.txt"].cid)) == b"content 7"
    assert entries["alias"].kind == "symlink" and entries["sub"].kind == "directory"
    get(store, root, tmp_path / "out")
    assert (tmp_path / "out" / "entry-399.txt").read_text() == "content 399"
    assert os.readlink(tmp_path / "out" / "alias") == "entry-1.txt"
    # Written back, the tree hashes to the oracle's CID again.
    assert str(add_path(tmp_path / "out", None, cid_version=version, shard_threshold=1000).cid) == out["cid"]


# -- Kubo parity (issue 13): hidden files, symlinks, the HAMT boundary, named profiles -------------
@needs_npm
def test_hidden_entries_are_skipped_as_ipfs_add_r_and_included_with_h(tmp_path: Path) -> None:
    # The npm importer takes the entries it is given; given the tree without its dot-entries it
    # is `ipfs add -r`, given everything it is `ipfs add -r -H`.
    full = tmp_path / "full"
    (full / ".git" / "objects").mkdir(parents=True)
    (full / ".git" / "objects" / "x").write_bytes(b"blob")
    (full / "src").mkdir()
    (full / "src" / ".DS_Store").write_bytes(b"\0\1")
    (full / "src" / "m.py").write_text("print(1)\n")
    (full / ".env").write_text("A=1\n")
    (full / "README").write_text("hi\n")
    visible = tmp_path / "full-visible"
    shutil.copytree(full, visible, ignore=lambda _d, names: [n for n in names if n.startswith(".")])
    for version in (1, 0):
        plain = add_path(full, None, cid_version=version)
        assert plain.skipped_hidden == 3
        assert str(plain.cid) == npm_oracle(visible, {}, v0=version == 0)["cid"]
        assert (
            str(add_path(full, None, cid_version=version, hidden=True).cid)
            == npm_oracle(full, {}, v0=version == 0)["cid"]
        )


@needs_npm
def test_absolute_and_out_of_tree_symlinks_match_the_npm_importer(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("f")
    os.symlink("/etc/passwd", root / "abs")
    os.symlink("../../outside", root / "sub" / "up")
    os.symlink("f", root / "sub" / "rel")
    os.symlink("missing/target", root / "dangling")
    for version in (1, 0):
        assert (
            str(add_path(root, None, cid_version=version).cid) == npm_oracle(root, {}, v0=version == 0)["cid"]
        )


def _boundary_tree(path: Path, extra: int) -> Path:
    # 4096 empty files with 28-byte names: each link is 28 name bytes + a 36-byte CIDv1, so the
    # links-bytes estimate is exactly 4096 * 64 = 262144 (the threshold); ``extra`` lengthens
    # one name by that many bytes.
    path.mkdir()
    for i in range(4096):
        name = f"{i:028d}" + ("x" * extra if i == 0 else "")
        (path / name).write_bytes(b"")
    return path


def test_hamt_boundary_exactly_at_the_threshold_stays_flat_one_byte_above_shards(tmp_path: Path) -> None:
    at = add_path(_boundary_tree(tmp_path / "at", 0), None)
    above = add_path(_boundary_tree(tmp_path / "above", 1), None)
    store = MemoryBlockStore()
    add_path(tmp_path / "at", store)
    add_path(tmp_path / "above", store)
    assert not stat(store, at.cid).sharded, "exactly at 256 KiB: flat (boxo and the npm importer use >)"
    assert stat(store, above.cid).sharded, "one byte above: a HAMT"


@needs_npm
def test_hamt_boundary_matches_the_npm_importer(tmp_path: Path) -> None:
    for extra in (0, 1):
        tree = _boundary_tree(tmp_path / f"t{extra}", extra)
        assert str(add_path(tree, None).cid) == npm_oracle(tree, {}, v0=False)["cid"]


@needs_npm
def test_named_profiles_match_the_npm_importers_cid_profiles(tmp_path: Path) -> None:
    # unixfs-v1-2025 measures the encoded block (block-bytes), Kubo's default the links: 4400
    # names of 20 bytes are ~246 KB of links but ~281 KB of block, so only the 2025 profile
    # shards this directory. A 2.5 MiB file shows the chunk size and the link count.
    wide = tmp_path / "wide"
    wide.mkdir()
    for i in range(4400):
        (wide / f"{i:020d}").write_bytes(b"")
    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(7).randbytes(2_621_440 + 17))
    store = MemoryBlockStore()
    assert not stat(store, add_path(wide, store, profile="kubo-cidv1").cid).sharded
    assert stat(store, add_path(wide, store, profile="unixfs-v1-2025").cid).sharded
    for target in (wide, big):
        for name, theirs in (("unixfs-v1-2025", "unixfs-v1-2025"), ("unixfs-v0-2015", "unixfs-v0-2015")):
            assert (
                str(add_path(target, None, profile=name).cid)
                == npm_oracle(target, {}, v0=False, profile=theirs)["cid"]
            ), f"{name} differs from the npm importer's profile for {target.name}"
        assert (
            str(add_path(target, None, profile="kubo-cidv1").cid) == npm_oracle(target, {}, v0=False)["cid"]
        )
