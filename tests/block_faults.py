"""Disk faults injected into a real repository store (tests only): a packed block's bytes
overwritten in LMDB, or a block removed, as a bad disk or a stray process would."""

from __future__ import annotations

from cats_runtime.cas import CID, PackedBlockStore
from cats_runtime.cas._packstore import _env


def tamper(store: PackedBlockStore, cid: CID, data: bytes) -> None:
    """Overwrite the stored bytes of ``cid`` (packed or a file) without re-hashing them."""
    with _env(store.packed_path, sync=True).begin(write=True) as txn:
        if txn.get(cid.to_v1().buffer) is not None:
            txn.put(cid.to_v1().buffer, data)
            return
    path = store.path_of(cid)
    path.chmod(0o644)
    path.write_bytes(data)


def stored_bytes(store: PackedBlockStore, cid: CID) -> bytes:
    """The bytes stored under ``cid``, as they are."""
    return store.get_unverified(cid)
