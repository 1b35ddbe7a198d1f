"""Fixed UnixFS vectors: CIDs computed by an independent importer, checked without any oracle.

``tests/data/unixfs_vectors.json`` describes each case's content (deterministically generated,
see ``materialize``) and the CIDs the npm ``ipfs-unixfs-importer`` gave for it, CIDv1 (its
defaults = ``ipfs add --cid-version=1``) and CIDv0 (profile ``unixfs-v0-2015`` = plain
``ipfs add``). ``tests/oracle/gen_vectors.py`` regenerates the file; ``test_oracles.py`` checks
the same cases against the live oracles when they are installed.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from cats_runtime.cas import CID, MemoryBlockStore, add_path, cat, get

VECTORS_PATH = Path(__file__).resolve().parent.parent / "data" / "unixfs_vectors.json"


def load_vectors() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["cases"]
    return cases


def content(spec: dict[str, Any]) -> bytes:
    """File content of a vector: Python ``random.Random(seed).randbytes(size)``, or literal text."""
    if "text" in spec:
        return str(spec["text"]).encode("utf-8")
    return random.Random(spec["seed"]).randbytes(spec["size"])


def materialize(tree: dict[str, Any], path: Path) -> None:
    """Create a vector's tree at ``path``.

    Forms: ``{"file": {"seed", "size"} | {"text"}}``, ``{"symlink": target}``,
    ``{"dir": {name: tree}}``, ``{"many": {"count", "name" (a format with {i}), "text"}}``
    (a directory of ``count`` small files, for sharding cases).
    """
    if "file" in tree:
        path.write_bytes(content(tree["file"]))
    elif "symlink" in tree:
        os.symlink(tree["symlink"], path)
    elif "dir" in tree:
        path.mkdir()
        for name, sub in tree["dir"].items():
            materialize(sub, path / name)
    elif "many" in tree:
        spec = tree["many"]
        path.mkdir()
        for i in range(spec["count"]):
            (path / spec["name"].format(i=i)).write_text(spec["text"].format(i=i), encoding="utf-8")
    else:
        raise ValueError(f"unknown vector tree {tree!r}")


def add_options(case: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in case.get("options", {}).items()}


CASES = load_vectors()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
@pytest.mark.parametrize("version", [1, 0])
def test_vector_cid(case: dict[str, Any], version: int, tmp_path: Path) -> None:
    target = tmp_path / "root"
    materialize(case["tree"], target)
    result = add_path(target, None, cid_version=version, hidden=True, **add_options(case))
    assert str(result.cid) == case[f"cid_v{version}"]


@pytest.mark.parametrize("case", [c for c in CASES if "file" in c["tree"]], ids=lambda c: c["name"])
def test_vector_file_roundtrip(case: dict[str, Any], tmp_path: Path) -> None:
    data = content(case["tree"]["file"])
    target = tmp_path / "f"
    target.write_bytes(data)
    store = MemoryBlockStore()
    result = add_path(target, store, hidden=True, **add_options(case))
    assert str(result.cid) == case["cid_v1"]
    assert result.size == len(data)
    assert b"".join(cat(store, CID.decode(case["cid_v1"]))) == data


# Directory round trips, without the two 4096-entry threshold cases (their CIDs are checked above
# and a 400-entry HAMT round trip is enough for the exporter; keeps the suite fast).
DIR_CASES = [c for c in CASES if "dir" in c["tree"] or c["tree"].get("many", {}).get("count", 0) <= 500]


@pytest.mark.parametrize("case", DIR_CASES, ids=lambda c: c["name"])
def test_vector_dir_roundtrip(case: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "src"
    materialize(case["tree"], source)
    store = MemoryBlockStore()
    cid = add_path(source, store, hidden=True, **add_options(case)).cid
    out = tmp_path / "out"
    get(store, cid, out)
    assert add_path(out, None, hidden=True, **add_options(case)).cid == cid
