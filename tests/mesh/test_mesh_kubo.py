"""The chain ends at a Kubo node: blocks no peer serves come from the IPFS RPC API, verified.

Uses the real js-ipfs RPC daemon of the Kubo-client tests (skipped only when it is not installed).
"""

from __future__ import annotations

import os
from pathlib import Path

from jsipfs_daemon import Daemon, jsipfs  # noqa: F401  (pytest fixture)

from cats_runtime.cas import CID, KuboClient, MemoryBlockStore, Repo, add_bytes, cat
from cats_runtime.operations import fetch_from_peers


def test_fetch_falls_back_to_kubo_after_peers(jsipfs: Daemon, tmp_path: Path) -> None:  # noqa: F811
    data = os.urandom(700_000)
    staging = MemoryBlockStore()
    root = add_bytes(data, staging)
    with KuboClient(jsipfs.api_url) as kubo:
        for cid in staging:
            kubo.block_put(staging.get(cid), codec="raw" if cid.codec == 0x55 else "dag-pb")
    dead_peer = "http://127.0.0.1:9"  # nothing listens there: a peer that is down
    report = fetch_from_peers(tmp_path / "home", root, [dead_peer], kubo=jsipfs.api_url)
    assert report.via == "blocks"
    assert report.fetched == report.blocks == len(staging)
    assert {f.source for f in report.failures} >= {dead_peer}  # the CAR attempt at the dead peer
    repo = Repo.open(tmp_path / "home")
    assert b"".join(cat(repo.blocks, root)) == data
    assert isinstance(root, CID) and root in repo.pins
