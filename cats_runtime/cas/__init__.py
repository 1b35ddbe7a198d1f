"""Content-addressed storage: CIDs, UnixFS, blockstores and CAR files."""

from __future__ import annotations

from ._blockstore import CorruptBlock, FSBlockStore
from ._car import MAX_SECTION, CarReader, export_car, import_car, read_car, write_car
from ._cid import (
    CID,
    CODEC_NAMES,
    DAG_CBOR,
    DAG_JSON,
    DAG_PB,
    HASH_NAMES,
    IDENTITY,
    RAW,
    SHA2_256,
    Block,
    compute_digest,
)
from ._dagcbor import decode as dagcbor_decode
from ._dagcbor import encode as dagcbor_encode
from ._dagcbor import iter_links
from ._dagjson import decode as dagjson_decode
from ._dagjson import encode as dagjson_encode
from ._dagpb import PBLink, PBNode, decode_pbnode, encode_pbnode
from ._gateway import (
    ChainedBlockSource,
    FetchResult,
    GatewayBlockSource,
    SourceFailure,
    verified_car,
    verified_dag,
)
from ._kubo import DagImportResult, KuboAddResult, KuboBlockStore, KuboClient, KuboVersion
from ._pins import Pin, PinStore
from ._repo import LAYOUT_VERSION, GCResult, Repo, VerifyReport, gc
from ._store import BlockSource, BlockStore, MemoryBlockStore
from ._unixfs import (
    CHUNK_SIZE,
    HAMT_SHARDING_SIZE,
    MAX_LINKS,
    AddResult,
    DirEntry,
    NodeInfo,
    UnixFSData,
    UnixFSType,
    add_bytes,
    add_directory,
    add_path,
    add_stream,
    cat,
    decode_unixfs,
    encode_unixfs,
    get,
    links,
    ls,
    murmur3_x64_64,
    stat,
)
from ._varint import decode_varint, encode_varint
from ._walk import links_of, reachable, walk

__all__ = [
    "ChainedBlockSource",
    "FetchResult",
    "GatewayBlockSource",
    "SourceFailure",
    "verified_car",
    "verified_dag",
    "DagImportResult",
    "KuboAddResult",
    "KuboBlockStore",
    "KuboClient",
    "KuboVersion",
    "CorruptBlock",
    "FSBlockStore",
    "MAX_SECTION",
    "CarReader",
    "export_car",
    "import_car",
    "read_car",
    "write_car",
    "Pin",
    "PinStore",
    "LAYOUT_VERSION",
    "GCResult",
    "VerifyReport",
    "Repo",
    "gc",
    "links_of",
    "reachable",
    "walk",
    "CHUNK_SIZE",
    "HAMT_SHARDING_SIZE",
    "MAX_LINKS",
    "AddResult",
    "DirEntry",
    "NodeInfo",
    "PBLink",
    "PBNode",
    "UnixFSData",
    "UnixFSType",
    "add_bytes",
    "add_directory",
    "add_path",
    "add_stream",
    "cat",
    "decode_pbnode",
    "decode_unixfs",
    "encode_pbnode",
    "encode_unixfs",
    "get",
    "links",
    "ls",
    "murmur3_x64_64",
    "stat",
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
    "dagjson_decode",
    "dagjson_encode",
    "decode_varint",
    "encode_varint",
    "iter_links",
]
