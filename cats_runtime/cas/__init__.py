"""Content-addressed storage: CIDs, UnixFS, blockstores and CAR files."""

from __future__ import annotations

from ._cid import (
    CODEC_NAMES,
    DAG_CBOR,
    DAG_JSON,
    DAG_PB,
    HASH_NAMES,
    IDENTITY,
    RAW,
    SHA2_256,
    CID,
    Block,
    compute_digest,
)
from ._dagcbor import decode as dagcbor_decode
from ._dagcbor import encode as dagcbor_encode
from ._dagcbor import iter_links
from ._store import BlockSource, BlockStore, MemoryBlockStore
from ._varint import decode_varint, encode_varint

__all__ = [
    "CID",
    "CODEC_NAMES",
    "DAG_CBOR",
    "DAG_JSON",
    "DAG_PB",
    "HASH_NAMES",
    "IDENTITY",
    "RAW",
    "SHA2_256",
    "Block",
    "BlockSource",
    "BlockStore",
    "MemoryBlockStore",
    "compute_digest",
    "dagcbor_decode",
    "dagcbor_encode",
    "decode_varint",
    "encode_varint",
    "iter_links",
]
