"""``GET``/``HEAD /ipfs/{cid}``: the IPFS trustless gateway protocol, read-only, local blocks only.

Follows specs.ipfs.tech/http-gateways/trustless-gateway: ``?format=raw`` / ``Accept:
application/vnd.ipld.raw`` answers one block; ``?format=car`` / ``Accept: application/vnd.ipld.car``
streams a CARv1 of the DAG (``dag-scope`` ``all`` by default, ``entity`` and ``block``
supported), depth-first (``order=dfs``), duplicates sent once unless ``dups=y`` is asked for.
Content paths ``/ipfs/{cid}/a/b`` are resolved through UnixFS directories (HAMT shards included):
a CAR then starts with every block needed to verify the path, and ``entity-bytes=from:to``
limits a file to the blocks covering that byte range (negative offsets count from the end,
``*`` is the end). ``Content-Location`` names the ``?format=`` URL when Accept chose it.
The node never fetches on a gateway request: a block it does not hold is 404 (or 412 with
``Cache-Control: only-if-cached``), so these requests cannot make the node reach out anywhere.
Writes are deliberately not offered (no ``POST /blocks``): blocks enter a node only through an
authenticated Order.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ..cas import CID, DAG_PB, IDENTITY, RAW, UnixFSType, _dagcbor, decode_pbnode, decode_unixfs, resolve_path
from ..cas._varint import encode_varint
from ..cas._walk import links_of
from ..errors import (
    BlockNotFoundError,
    CatsError,
    DecodeError,
    IntegrityError,
    InvalidInputError,
    LimitError,
    StoreError,
)
from ._errors import NotAcceptableError
from ._state import NodeState, node_state

__all__ = ["RAW_MEDIA_TYPE", "CAR_MEDIA_TYPE", "router"]

log = logging.getLogger(__name__)

RAW_MEDIA_TYPE: Final = "application/vnd.ipld.raw"
CAR_MEDIA_TYPE: Final = "application/vnd.ipld.car"
_IMMUTABLE: Final = "public, max-age=29030400, immutable"
_FLUSH_AT: Final = 2 << 20  # batch blocks into ~2 MiB writes: one thread hop per batch
Scope = Literal["block", "entity", "all"]

router = APIRouter(tags=["gateway"])


@dataclass(frozen=True)
class _Wanted:
    kind: Literal["raw", "car"]
    dups: bool = False


def _params(text: str) -> tuple[str, dict[str, str]]:
    media, *rest = (p.strip() for p in text.split(";"))
    params: dict[str, str] = {}
    for item in rest:
        key, _, value = item.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return media.lower(), params


def _car_variant(params: dict[str, str]) -> _Wanted | None:
    """The CAR variant asked for, or None when it is one we cannot produce."""
    if params.get("version", "1") != "1":
        return None
    if params.get("order", "dfs") not in ("dfs", "unk", ""):
        return None
    dups = params.get("dups", "n")
    if dups not in ("y", "n"):
        return None
    return _Wanted("car", dups == "y")


def _negotiate(request: Request) -> _Wanted:
    q = request.query_params
    fmt = q.get("format")
    accept = request.headers.get("accept", "")
    if fmt is not None:
        if fmt == "raw":
            return _Wanted("raw")
        if fmt == "car":
            params = {
                "version": q.get("car-version", "1"),
                "order": q.get("car-order", "dfs"),
                "dups": q.get("car-dups", ""),
            }
            # Accept may still carry the CAR parameters; the query's own ones take precedence.
            for item in accept.split(","):
                media, p = _params(item)
                if media == CAR_MEDIA_TYPE:
                    params = {**p, **{k: v for k, v in params.items() if k in q or f"car-{k}" in q}}
                    break
            params["dups"] = params.get("dups") or "n"
            wanted = _car_variant(params)
            if wanted is None:
                raise NotAcceptableError(f"expected CAR version=1, order=dfs|unk, dups=y|n, found {params}")
            return wanted
        raise InvalidInputError(f"expected format=raw or format=car on this trustless gateway, found {fmt!r}")
    offers: list[tuple[float, int, _Wanted]] = []
    refused: list[str] = []
    for position, item in enumerate(accept.split(",")):
        if not item.strip():
            continue
        media, params = _params(item)
        try:
            weight = float(params.pop("q", "1"))
        except ValueError:
            weight = 0.0
        if weight <= 0:
            continue
        if media == RAW_MEDIA_TYPE:
            offers.append((weight, -position, _Wanted("raw")))
        elif media == CAR_MEDIA_TYPE:
            wanted = _car_variant(params)
            if wanted is None:
                refused.append(item.strip())
            else:
                offers.append((weight, -position, wanted))
    if offers:
        return max(offers, key=lambda o: (o[0], o[1]))[2]
    if refused:
        raise NotAcceptableError(
            f"expected a CAR variant with version=1, order=dfs|unk, dups=y|n, found {refused}"
        )
    raise InvalidInputError(
        "expected ?format=raw|car or an Accept header naming application/vnd.ipld.raw or "
        f"application/vnd.ipld.car (this gateway only serves verifiable responses), found Accept {accept!r}"
    )


def _scope(request: Request) -> Scope:
    value = request.query_params.get(
        "dag-scope", "entity" if "entity-bytes" in request.query_params else "all"
    )
    if value not in ("block", "entity", "all"):
        raise InvalidInputError(f"expected dag-scope=block|entity|all, found {value!r}")
    return value  # type: ignore[return-value]


Reader = Callable[[CID], bytes]
ByteRange = tuple[int, int | None]  # (from, to) as given: negative counts from the end, None is '*'


def _entity_bytes(request: Request) -> ByteRange | None:
    text = request.query_params.get("entity-bytes")
    if text is None:
        return None
    start, sep, end = text.partition(":")
    try:
        lo = int(start)
        hi = None if end == "*" else int(end)
    except ValueError:
        lo, hi, sep = 0, None, ""
    if not sep or not start.lstrip("-").isdigit() or (hi is not None and not end.lstrip("-").isdigit()):
        raise InvalidInputError(f"expected entity-bytes=from:to (integers, to may be '*'), found {text!r}")
    if request.query_params.get("dag-scope", "entity") != "entity":
        raise InvalidInputError(
            "expected entity-bytes with dag-scope=entity (it implies it), found another scope"
        )
    return lo, hi


class _ReaderSource:
    """The gateway's reader as a block source, for resolving content paths."""

    def __init__(self, read: Reader) -> None:
        self._read = read

    def get(self, cid: CID) -> bytes:
        return self._read(cid)

    def has(self, cid: CID) -> bool:
        return True


def _reader(state: NodeState) -> Reader:
    """How this node reads blocks for the gateway.

    By default every block is re-hashed before it is sent: every byte CATs reads from a store is
    checked against its CID before use, and a node that passed on a corrupt block would make its
    peers report it as lying. ``cats node serve --no-verify-reads`` serves block files as they
    are (as Kubo does with ``Datastore.HashOnRead`` off): the protocol is trustless, so clients
    still catch a bad block, and ``cats repo verify`` finds local corruption.
    """
    blocks = state.blocks

    def verified(cid: CID) -> bytes:
        if cid.hash_code == IDENTITY:
            return cid.digest
        try:
            return blocks.get(cid)
        except IntegrityError as exc:
            # Our own disk is wrong, not the client: a server error, never a 400.
            raise StoreError(f"the node's copy of {cid} is corrupt: {exc}") from exc

    def as_stored(cid: CID) -> bytes:
        return blocks.get_unverified(cid)

    return verified if state.config.verify_reads else as_stored


def _entity_links(cid: CID, data: bytes) -> tuple[list[CID], bool]:
    """Links to follow for dag-scope=entity, and whether to follow them recursively.

    A UnixFS file needs every block (recursively); a directory only its own node, and for a
    HAMT-sharded directory its inner shard nodes; any other block is an entity by itself.
    """
    if cid.codec != DAG_PB:
        return [], False
    node = decode_pbnode(data)
    if node.data is None:
        return [], False
    try:
        fs = decode_unixfs(node.data)
    except DecodeError:
        return [], False
    if fs.type in (UnixFSType.FILE, UnixFSType.RAW):
        return [link.cid for link in node.links], True
    if fs.type == UnixFSType.HAMT_SHARD and fs.fanout:
        width = len(f"{fs.fanout - 1:X}")
        return [link.cid for link in node.links if link.name is not None and len(link.name) == width], False
    return [], False


_MAX_DUPLICATES = 100_000


def _file_size(cid: CID, data: bytes) -> int | None:
    """The byte length of a UnixFS file rooted at this block, or None when it is no file."""
    if cid.codec != DAG_PB:
        return len(data) if cid.codec == RAW or cid.hash_code == IDENTITY else None
    node = decode_pbnode(data)
    if node.data is None:
        return None
    try:
        fs = decode_unixfs(node.data)
    except DecodeError:
        return None
    if fs.type not in (UnixFSType.FILE, UnixFSType.RAW):
        return None
    return len(fs.data or b"") + sum(fs.blocksizes)


def _range_blocks(read: Reader, root: CID, root_data: bytes, lo: int, hi: int) -> Iterator[tuple[CID, bytes]]:
    """The blocks of a UnixFS file needed to verify bytes ``[lo, hi]``, depth-first pre-order."""
    stack: list[tuple[CID, bytes | None, int]] = [(root, root_data, 0)]  # (cid, bytes, file offset)
    while stack:
        cid, data, offset = stack.pop()
        if data is None:
            data = read(cid)
        yield cid, data
        if cid.codec != DAG_PB:
            continue
        node = decode_pbnode(data)
        fs = decode_unixfs(node.data or b"")
        if len(fs.blocksizes) != len(node.links):
            raise DecodeError(f"expected one blocksize per link in {cid}, found a mismatch")
        child = offset + len(fs.data or b"")
        wanted: list[tuple[CID, bytes | None, int]] = []
        for link, size in zip(node.links, fs.blocksizes, strict=True):
            if child <= hi and child + size > lo:
                wanted.append((link.cid, None, child))
            child += size
        stack.extend(reversed(wanted))


def _dag(
    read: Reader,
    root: CID,
    root_data: bytes,
    scope: Scope,
    dups: bool,
    prefix: tuple[CID, ...] = (),
    byte_range: tuple[int, int] | None = None,
) -> Iterator[tuple[CID, bytes]]:
    """Blocks of the requested scope, depth-first pre-order (the root first).

    ``prefix`` are the blocks that verify the content path leading to ``root``, sent first;
    ``byte_range`` (inclusive, resolved) limits a UnixFS file to the blocks covering it.
    """
    seen: set[CID] = set()
    for cid in prefix:
        if cid.to_v1() not in seen:
            seen.add(cid.to_v1())
            yield cid, read(cid)
    if scope == "block":
        if dups or root.to_v1() not in seen:
            yield root, root_data
        return
    if byte_range is not None:
        for cid, block in _range_blocks(read, root, root_data, *byte_range):
            if dups or cid.to_v1() not in seen:
                seen.add(cid.to_v1())
                yield cid, block
        return
    repeats = 0
    # (cid, its bytes when already read, whole subtree (True) or entity rules (False))
    stack: list[tuple[CID, bytes | None, bool]] = [(root, root_data, scope == "all")]
    while stack:
        cid, data, whole = stack.pop()
        key = cid.to_v1()
        if key in seen:
            if not dups:
                continue
            # A DAG of stacked diamonds repeats blocks 2**depth times: bound the repeats so a
            # few stored blocks cannot make an anonymous request stream without end.
            repeats += 1
            if repeats > _MAX_DUPLICATES:
                raise LimitError(
                    f"expected at most {_MAX_DUPLICATES} repeated blocks in a dups=y CAR of {root}, "
                    "found more: ask for dups=n"
                )
        seen.add(key)
        if data is None:
            data = read(cid)
        yield cid, data
        if whole:
            children, child_whole = links_of(cid, data), True
        else:
            children, child_whole = _entity_links(cid, data)
        stack.extend((child, None, child_whole) for child in reversed(children))


def _car_header(root: CID) -> bytes:
    header = _dagcbor.encode({"roots": [root], "version": 1})
    return encode_varint(len(header)) + header


def _car_body(root: CID, blocks: Iterator[tuple[CID, bytes]], max_bytes: int) -> Iterator[bytes]:
    """The CAR's bytes, at most ``max_bytes`` of them: past that the CAR ends before the next block.

    The bound is on bytes, not blocks: a DAG of a few stacked diamonds asked for with ``dups=y``
    repeats its blocks 2**depth times, and a bound on repeats alone still let a 0.5 MB DAG
    stream gigabytes to an anonymous client.
    """
    header = _car_header(root)
    parts: list[bytes] = [header]
    pending = 0
    sent = len(header)
    try:
        for cid, data in blocks:
            if cid.hash_code == IDENTITY:
                continue  # the spec forbids identity blocks in CAR responses
            raw = bytes(cid)
            prefix = encode_varint(len(raw) + len(data))
            sent += len(prefix) + len(raw) + len(data)
            if sent > max_bytes:
                # The status line is gone already: end the CAR early (clients check completeness).
                log.warning("CAR of %s ended early: past %d bytes (--max-car-response-mib)", root, max_bytes)
                break
            parts += (prefix, raw, data)
            pending += len(data)
            if pending >= _FLUSH_AT:
                yield b"".join(parts)
                parts, pending = [], 0
    except CatsError as exc:
        # The status line is gone already: end the CAR early (clients must check completeness).
        log.warning("CAR of %s ended early: %s", root, exc)
    if parts:
        yield b"".join(parts)


def _common_headers(cid: CID, etag: str, path: str = "", roots: tuple[CID, ...] = ()) -> dict[str, str]:
    headers = {
        "ETag": etag,
        "Cache-Control": _IMMUTABLE,
        "X-Ipfs-Path": f"/ipfs/{cid}{path}",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept",
    }
    if roots:
        headers["X-Ipfs-Roots"] = ",".join(str(r) for r in roots)
    return headers


def _content_location(request: Request, fmt: str) -> dict[str, str]:
    """``Content-Location`` when Accept, not ``?format=``, chose the response format (spec SHOULD)."""
    if "format" in request.query_params:
        return {}
    items = request.query_params.multi_items()
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe=':*')}" for k, v in items)
    return {"Content-Location": f"{quote(request.url.path)}?format={fmt}" + (f"&{query}" if query else "")}


def _not_modified(request: Request, etag: str) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
    return "*" in tags or etag in tags


_MAX_SEGMENTS: Final = 64  # deeper content paths are refused (spec: guard against resource exhaustion)


_IPFS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {RAW_MEDIA_TYPE: {}, CAR_MEDIA_TYPE: {}}, "description": "A block or a CAR stream"},
    304: {"description": "If-None-Match matched"},
    400: {"description": "Malformed CID, or no verifiable format requested"},
    404: {"description": "The node does not hold the (root) block"},
    406: {"description": "Only CAR variants this gateway cannot produce were accepted"},
    412: {"description": "Cache-Control: only-if-cached and the block is not here"},
}


# GET and HEAD are two routes, not one `api_route(methods=[...])`: FastAPI gives every method of
# one route the same operationId, and /openapi.json would then repeat it (and warn).
@router.get(
    "/ipfs/{cid}",
    operation_id="get_ipfs",
    summary="Fetch a block or a DAG as CAR (trustless gateway)",
    response_class=Response,
    responses=_IPFS_RESPONSES,
)
@router.head(
    "/ipfs/{cid}",
    operation_id="head_ipfs",
    summary="Headers of GET /ipfs/{cid}, without the body",
    response_class=Response,
    responses=_IPFS_RESPONSES,
)
def get_ipfs(cid: str, request: Request) -> Response:
    """Serve one block (``format=raw``) or the DAG under it (``format=car``), verified on read."""
    return _serve(cid, "", request)


_IPFS_PATH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {RAW_MEDIA_TYPE: {}, CAR_MEDIA_TYPE: {}}, "description": "A block or a CAR stream"},
    400: {"description": "Malformed CID or path, or the path goes through a file"},
    404: {"description": "The root block or an entry of the path is not here"},
}


@router.get(
    "/ipfs/{cid}/{path:path}",
    operation_id="get_ipfs_path",
    summary="Fetch the block or DAG a UnixFS content path names (trustless gateway)",
    response_class=Response,
    responses=_IPFS_PATH_RESPONSES,
)
@router.head(
    "/ipfs/{cid}/{path:path}",
    operation_id="head_ipfs_path",
    summary="Headers of GET /ipfs/{cid}/{path}, without the body",
    response_class=Response,
    responses=_IPFS_PATH_RESPONSES,
)
def get_ipfs_path(cid: str, path: str, request: Request) -> Response:
    """Resolve ``path`` through UnixFS directories, then serve as ``/ipfs/{cid}`` does."""
    return _serve(cid, path, request)


def _serve(cid: str, path: str, request: Request) -> Response:
    root = CID.decode(cid)
    segments = [s for s in path.split("/") if s]
    if len(segments) > _MAX_SEGMENTS:
        raise InvalidInputError(
            f"expected a content path of at most {_MAX_SEGMENTS} segments, found {len(segments)}"
        )
    if any(s in (".", "..") for s in segments):
        raise InvalidInputError(f"expected plain path segments, found {path[:100]!r}")
    wanted = _negotiate(request)
    scope = _scope(request) if wanted.kind == "car" else "block"
    requested_range = _entity_bytes(request) if wanted.kind == "car" else None
    if wanted.kind == "raw" and ("entity-bytes" in request.query_params):
        raise InvalidInputError("expected entity-bytes only with format=car, found it with format=raw")
    state = node_state(request)
    read = _reader(state)
    try:
        root_data = read(root)
    except BlockNotFoundError:
        if "only-if-cached" in request.headers.get("cache-control", ""):
            return Response(status_code=412, headers={"X-Content-Type-Options": "nosniff"})
        raise
    target, data = root, root_data
    prefix: tuple[CID, ...] = ()
    logical: tuple[CID, ...] = (root,)
    if segments:
        target, prefix, logical = _resolve(read, root, segments)
        data = read(target)
    suffix = "/" + "/".join(quote(s) for s in segments) if segments else ""
    head = request.method == "HEAD"
    if wanted.kind == "raw":
        etag = f'"{target}.raw"'
        headers = _common_headers(root, etag, suffix, logical if segments else ())
        headers.update(_content_location(request, "raw"))
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        headers["Content-Disposition"] = f'attachment; filename="{target}.bin"'
        headers["Content-Length"] = str(len(data))
        return Response(b"" if head else data, media_type=RAW_MEDIA_TYPE, headers=headers)
    byte_range: tuple[int, int] | None = None
    if requested_range is not None:
        size = _file_size(target, data)
        if size is not None:
            byte_range = _resolve_range(requested_range, size)
            if byte_range is None:
                scope = "block"  # a zero-length range: the root block tells the client the size
    dups = "y" if wanted.dups else "n"
    variant_text = f"{scope};{dups};{path};{requested_range}"
    variant = hashlib.sha256(variant_text.encode()).hexdigest()[:12]
    etag = f'"{root}.car.{variant}"'
    headers = _common_headers(root, etag, suffix, logical)
    headers.update(_content_location(request, "car"))
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{target}.car"'
    media = f"{CAR_MEDIA_TYPE}; version=1; order=dfs; dups={dups}"
    if head:
        return Response(b"", headers={**headers, "Content-Type": media})
    blocks = _dag(read, target, data, scope, wanted.dups, prefix, byte_range)
    body = _car_body(root, blocks, state.config.limits.max_car_response_bytes)
    return StreamingResponse(body, headers={**headers, "Content-Type": media})


def _resolve_range(requested: ByteRange, size: int) -> tuple[int, int] | None:
    """``entity-bytes`` against a file of ``size`` bytes: inclusive offsets, None for an empty range.

    Raises:
        InvalidInputError: the range lies entirely outside the file (the spec's 400).
    """
    lo, hi = requested
    start = max(0, size + lo) if lo < 0 else lo
    end = size - 1 if hi is None else (size + hi if hi < 0 else min(hi, size - 1))
    if start >= size and (size or hi is not None):  # 0:* of an empty file is that (empty) file
        raise InvalidInputError(f"expected entity-bytes starting inside the file of {size} bytes, found {lo}")
    if end < start or size == 0:
        return None
    return start, end


def _resolve(read: Reader, root: CID, segments: list[str]) -> tuple[CID, tuple[CID, ...], tuple[CID, ...]]:
    """Resolve a content path in one walk, one segment after the other.

    Returns:
        The CID the path names; every block read on the way (what a client needs to verify the
        resolution, root first); and the logical roots of ``X-Ipfs-Roots``: the root, then the
        entry each segment resolved to. Resolving each prefix from the root again would load
        n(n+1)/2 directories for n segments (2,080 for the 64 allowed).
    """
    source = _ReaderSource(read)
    cid = root
    traversed: list[CID] = []
    logical = [root]
    for segment in segments:
        cid, step = resolve_path(source, cid, [segment])
        traversed += step
        logical.append(cid)
    return cid, tuple(traversed), tuple(logical)
