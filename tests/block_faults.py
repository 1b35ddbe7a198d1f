"""Disk faults injected into a real repository store (tests only): a packed block's bytes
overwritten in LMDB, or a block removed, as a bad disk or a stray process would."""

from __future__ import annotations

import lmdb

from cats_runtime.cas import CID, PackedBlockStore
from cats_runtime.cas._packstore import _env


def tamper(store: PackedBlockStore, cid: CID, data: bytes) -> None:
    """Overwrite the stored bytes of ``cid`` (packed or a file) without re-hashing them."""
    key = cid.to_v1().buffer

    def overwrite(txn: lmdb.Transaction) -> bool:
        return txn.get(key) is not None and txn.put(key, data)

    # Through the store's gate, as every transaction of the process must (it may remap).
    if _env(store.packed_path, sync=True).write(overwrite, size=len(data)):
        return
    path = store.path_of(cid)
    path.chmod(0o644)
    path.write_bytes(data)


def stored_bytes(store: PackedBlockStore, cid: CID) -> bytes:
    """The bytes stored under ``cid``, as they are."""
    return store.get_unverified(cid)
