"""UnixFS: Kubo-identical import of files and directory trees, and a verifying exporter.

The implementation is split by direction; this module is the one place to import from:

- ``_unixfs_pb``: the UnixFS Data protobuf and the shared value types;
- ``_unixfs_import``: :func:`add_path`, :func:`add_stream`, :func:`add_bytes`, :func:`add_directory`;
- ``_unixfs_export``: :func:`cat`, :func:`get`, :func:`links`, :func:`ls`, :func:`stat`;
- ``_hamt``: reading HAMT-sharded directories (murmur3-x64-64 keyed).
"""

from __future__ import annotations

from ._hamt import murmur3_x64_64
from ._profiles import DEFAULT_PROFILE, PROFILES, ImportProfile, get_profile
from ._unixfs_export import cat, get, links, ls, resolve_path, split_path, stat
from ._unixfs_import import (
    CHUNK_SIZE,
    HAMT_SHARDING_SIZE,
    MAX_LINKS,
    add_bytes,
    add_directory,
    add_path,
    add_stream,
)
from ._unixfs_pb import AddResult, DirEntry, NodeInfo, UnixFSData, UnixFSType, decode_unixfs, encode_unixfs

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_PROFILE",
    "PROFILES",
    "ImportProfile",
    "get_profile",
    "resolve_path",
    "split_path",
    "HAMT_SHARDING_SIZE",
    "MAX_LINKS",
    "AddResult",
    "DirEntry",
    "NodeInfo",
    "UnixFSData",
    "UnixFSType",
    "add_bytes",
    "add_directory",
    "add_path",
    "add_stream",
    "cat",
    "decode_unixfs",
    "encode_unixfs",
    "get",
    "links",
    "ls",
    "murmur3_x64_64",
    "stat",
]
