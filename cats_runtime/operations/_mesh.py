"""Exchange by CID between CAT Nodes: fetch DAGs from peers' gateways, submit Orders to a node.

Fetching goes through :class:`~cats_runtime.cas.ChainedBlockSource` semantics: the local store
first, then each peer's trustless gateway, then optionally a Kubo node. Every block is hashed
against its CID before it is stored; a peer that sends a wrong or unrelated block is reported
in :attr:`FetchReport.failures` and skipped, and the next source is asked.

When the root is not local at all, the whole DAG is first asked for as one streamed CAR from
each peer in turn (one request, no per-block round trips: the fast path over a WAN); if that
fails, or part of the DAG is already local, missing blocks are fetched one by one, in parallel,
from every source in order.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import queue
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from ..cas import CID, DAG_CBOR, RAW, Block, BlockSource, BlockStore, PeerGuard, Repo, dagcbor_decode
from ..cas._car import write_car
from ..cas._gateway import ChainedBlockSource, GatewayBlockSource
from ..cas._kubo import KuboBlockStore, KuboClient
from ..cas._varint import decode_varint
from ..cas._walk import links_of, reachable, walk
from ..errors import (
    BlockNotFoundError,
    CatsError,
    DecodeError,
    IntegrityError,
    InvalidInputError,
    LimitError,
    PeerError,
)
from ..records import BOMRecord, FunctionRecord, OrderRecord, decode_record
from ._identity import verify_bom_signature

__all__ = [
    "FetchReport",
    "check_parents",
    "PeerFailure",
    "fetch_from_peers",
    "fetch_order",
    "index_records",
    "load_order",
    "order_blocks",
    "raise_for_node_error",
    "run_status",
    "submit_order",
    "wait_for_run",
]

log = logging.getLogger(__name__)

DEFAULT_PARALLELISM: Final = 8


@dataclass(frozen=True)
class PeerFailure:
    """A source that misbehaved while fetching.

    Attributes:
        source: Which peer (its gateway URL or Kubo API).
        cid: The block or DAG root being fetched.
        error: What it did wrong (wrong bytes, unrelated blocks, truncated CAR, HTTP failure).
    """

    source: str
    cid: CID
    error: str


@dataclass(frozen=True)
class FetchReport:
    """What :func:`fetch_from_peers` did.

    Attributes:
        root: The DAG's root.
        blocks: Blocks in the DAG.
        bytes: Bytes of those blocks.
        fetched: Blocks that came from a peer (the rest were local already).
        fetched_bytes: Bytes of the fetched blocks.
        seconds: Wall time.
        via: ``"local"`` (nothing to fetch), ``"car"`` (one streamed CAR) or ``"blocks"``
            (block by block, in parallel).
        failures: Peers that misbehaved and were skipped.
    """

    root: CID
    blocks: int
    bytes: int
    fetched: int
    fetched_bytes: int
    seconds: float
    via: str
    failures: tuple[PeerFailure, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "root": str(self.root),
            "blocks": self.blocks,
            "bytes": self.bytes,
            "fetched": self.fetched,
            "fetched_bytes": self.fetched_bytes,
            "seconds": round(self.seconds, 3),
            "via": self.via,
            "failures": [{"source": f.source, "cid": str(f.cid), "error": f.error} for f in self.failures],
        }


def _check_peers(peers: Sequence[str]) -> None:
    for peer in peers:
        if not peer.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"expected a peer gateway URL starting with http:// or https://, found {peer!r}"
            )


class _Counting:
    """Counts the blocks and bytes of a stream of blocks as it passes, within an optional budget."""

    def __init__(self, blocks: Iterable[Block], max_bytes: int | None = None) -> None:
        self._blocks = blocks
        self._max = max_bytes
        self.count = 0
        self.bytes = 0

    def __iter__(self) -> Iterator[Block]:
        for block in self._blocks:
            self.count += 1
            self.bytes += len(block.data)
            if self._max is not None and self.bytes > self._max:
                raise LimitError(
                    f"expected at most {self._max} bytes from the peer, found more after {self.count} blocks"
                )
            yield block


def _dag_size(source: BlockSource, root: CID) -> tuple[int, int]:
    count = size = 0
    for block in walk(source, root):
        count += 1
        size += len(block.data)
    return count, size


def _local_complete(store: BlockStore, root: CID) -> bool:
    try:
        reachable(store, [root])
    except BlockNotFoundError:
        return False
    return True


def fetch_from_peers(
    home: Path,
    root: CID,
    peers: Sequence[str],
    *,
    kubo: str | None = None,
    parallelism: int = DEFAULT_PARALLELISM,
    pin: bool = True,
    index: bool = True,
    timeout: float = 30.0,
    max_bytes: int | None = None,
    guard: PeerGuard | None = None,
) -> FetchReport:
    """Make the whole DAG under ``root`` local to ``home``, from peers' trustless gateways.

    Args:
        home: The CATs home to fetch into.
        root: The DAG's root CID.
        peers: Gateway base URLs (``http://host:port``), asked in order.
        kubo: A Kubo RPC API URL to ask after the peers (optional).
        parallelism: Concurrent block requests in the block-by-block path.
        pin: Pin ``root`` once the DAG is complete (so ``repo gc`` keeps it).
        index: Add the CATs records of the DAG to the catalog, so lineage and ``catalog``
            queries see runs made by other organizations.
        timeout: Seconds allowed per request for connecting and between bytes.
        max_bytes: Refuse a DAG needing more than this many bytes from the peers (None: no
            limit); a node fetching for a remote submitter sets it, so nobody can fill its disk.
        guard: Connect only to this destination, within its deadline (a node fetching for a
            remote submitter; ``peers`` must then be that destination's URL).

    Returns:
        A report with counts, timings and any misbehaving peers.

    Raises:
        BlockNotFoundError: Some block is neither local nor served correctly by any source (the
            message names who failed how). Blocks fetched so far stay, so a retry resumes.
        InvalidInputError: A peer URL is not http(s).
        LimitError: The DAG needs more than ``max_bytes`` (what was fetched stays unpinned).
    """
    _check_peers(peers)
    started = time.perf_counter()
    # put_many makes each batch durable with one syncfs before renaming it into place, so the
    # pin below only ever names complete, durable blocks.
    repo = Repo.open(home)
    failures: list[PeerFailure] = []
    connections = max(parallelism, 4)
    with (
        repo.write_lock(),
        (
            httpx.Client(
                timeout=timeout,
                limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            )
            if guard is None
            else guard.client(timeout=timeout, max_connections=connections)
        ) as http,
    ):
        gateways = [GatewayBlockSource(p, http, timeout=timeout) for p in peers]
        report: FetchReport | None = None
        if _local_complete(repo.blocks, root):
            count, size = _dag_size(repo.blocks, root)
            report = FetchReport(root, count, size, 0, 0, 0.0, "local")
        elif not repo.blocks.has(root):
            report = _fetch_car(repo.blocks, root, peers, failures, timeout, max_bytes, guard)
        if report is None:
            remotes: list[BlockSource] = list(gateways)
            kubo_client = KuboClient(kubo, timeout=timeout) if kubo else None
            if kubo_client is not None:
                remotes.append(KuboBlockStore(kubo_client, timeout=timeout))
            try:
                chained = ChainedBlockSource(repo.blocks, remotes)
                try:
                    result = chained.fetch_dag(root, parallelism, max_bytes)
                finally:
                    failures.extend(PeerFailure(f.source, f.cid, str(f.error)) for f in chained.failures)
            finally:
                if kubo_client is not None:
                    kubo_client.close()
            report = FetchReport(
                root, result.blocks, result.bytes, result.fetched, result.fetched_bytes, 0.0, "blocks"
            )
        if pin:
            repo.pins.add(root, name="fetched")
    if index:
        index_records(home, root)
    return FetchReport(
        report.root,
        report.blocks,
        report.bytes,
        report.fetched,
        report.fetched_bytes,
        time.perf_counter() - started,
        report.via,
        tuple(failures),
    )


_CAR_MEDIA_TYPE: Final = "application/vnd.ipld.car"
_MAX_SECTION: Final = (2 << 20) + 128  # the largest block a peer may send (bitswap's 2 MiB) + its CID
_READ_SIZE: Final = 4 << 20


class _CarStream:
    """One streamed CAR of a DAG from a peer's trustless gateway, verified block by block.

    Each block is hashed against its CID and must be reachable from the root through blocks
    received before it (the request asks for depth-first order), so a peer can neither inject
    data nor pass off unrelated blocks; a CAR that ends before the DAG is complete is an error.
    The body is read into a large buffer with :mod:`http.client` and parsed in place: this is
    the bulk path between nodes, and it runs several times faster than a generic reader.
    """

    def __init__(self, base_url: str, root: CID, timeout: float, guard: PeerGuard | None = None) -> None:
        url = urllib.parse.urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InvalidInputError(f"expected an http(s) gateway URL, found {base_url!r}")
        self.peer = base_url.rstrip("/")
        self.root = root
        self._url = url
        self._timeout = timeout
        self._guard = guard

    def _connect(self) -> http.client.HTTPConnection:
        port = self._url.port
        conn: http.client.HTTPConnection
        if self._url.scheme == "https":
            conn = http.client.HTTPSConnection(self._url.hostname or "", port, timeout=self._timeout)
        else:
            conn = http.client.HTTPConnection(self._url.hostname or "", port, timeout=self._timeout)
        if self._guard is not None:
            # http.client opens its socket through this hook (TLS is then wrapped around it).
            conn._create_connection = self._guard.create_connection  # type: ignore[attr-defined]
        return conn

    def blocks(self) -> Iterator[Block]:
        """Yield the DAG's verified blocks, root first.

        Raises:
            BlockNotFoundError: The peer does not have the root.
            IntegrityError: A block's bytes do not match its CID (names the peer).
            PeerError: The peer failed, stalled, sent a malformed or incomplete CAR, or a block
                not reachable from the root.
        """
        conn = self._connect()
        try:
            yield from self._blocks(conn)
        except PeerError:
            raise  # already says what the peer did (PeerError is an OSError: keep it unwrapped)
        except (OSError, http.client.HTTPException) as exc:
            raise PeerError(f"cannot fetch the CAR of {self.root} from {self.peer}: {exc}") from exc
        except (DecodeError, InvalidInputError) as exc:
            # A varint, CID or block that does not parse: the peer's fault, never the caller's.
            raise PeerError(f"{self.peer} sent a malformed CAR for {self.root}: {exc}") from exc
        finally:
            conn.close()

    def _blocks(self, conn: http.client.HTTPConnection) -> Iterator[Block]:
        path = f"{self._url.path}/ipfs/{self.root}?format=car&dag-scope=all"
        conn.request("GET", path, headers={"Accept": f"{_CAR_MEDIA_TYPE}; version=1; order=dfs; dups=n"})
        response = conn.getresponse()
        if response.status in (404, 410, 412):
            raise BlockNotFoundError(f"DAG {self.root} not found at {self.peer} (HTTP {response.status})")
        if response.status != 200:
            raise PeerError(
                f"{self.peer} answered the CAR of {self.root} with HTTP {response.status}, expected 200"
            )
        media = (response.getheader("Content-Type") or "").replace(" ", "").lower()
        if not media.startswith(_CAR_MEDIA_TYPE) or "version=2" in media:
            raise PeerError(f"{self.peer} answered with Content-Type {media!r}, expected a CARv1")
        buffer = bytearray(_READ_SIZE * 2)
        view = memoryview(buffer)
        start = end = 0  # unparsed bytes are buffer[start:end]
        eof = False
        expected: set[CID] = {self.root}
        seen: set[CID] = set()
        header_done = False

        def need(n: int) -> bool:
            """Make at least ``n`` unparsed bytes available; False at a clean end of stream."""
            nonlocal start, end, eof, buffer, view
            while end - start < n:
                if eof:
                    return False
                if start and (len(buffer) - end < _READ_SIZE or start == end):
                    view[: end - start] = view[start:end]  # move the tail to the front
                    end -= start
                    start = 0
                if len(buffer) - end < max(_READ_SIZE, n):
                    view.release()
                    buffer.extend(bytes(max(_READ_SIZE, n)))
                    view = memoryview(buffer)
                got = response.readinto(view[end : end + _READ_SIZE])
                if not got:
                    eof = True
                end += got
            return True

        def varint() -> int | None:
            nonlocal start
            if not need(1):
                return None
            need(10)
            value, off = decode_varint(view, start)
            start = off
            return value

        while True:
            length = varint()
            if length is None:
                break
            if length == 0 or length > _MAX_SECTION:
                raise PeerError(f"{self.peer} sent a CAR section of {length} bytes in the CAR of {self.root}")
            if not need(length):
                raise PeerError(f"{self.peer} ended the CAR of {self.root} in the middle of a section")
            section = view[start : start + length]
            start += length
            if not header_done:
                header_done = True
                header = dagcbor_decode(bytes(section))
                if not isinstance(header, dict) or header.get("version") != 1:
                    raise PeerError(f"{self.peer} sent a CAR header that is not CARv1: {header!r:.80}")
                continue  # the roots are advisory (the spec says clients should ignore them)
            cid, off = CID.read(section)
            data = bytes(section[off:])
            section.release()
            if cid in seen:
                continue
            if cid not in expected:
                raise PeerError(
                    f"{self.peer} sent block {cid} in the CAR of {self.root}, which is not reachable from "
                    "it through the blocks sent before"
                )
            block = Block.checked(cid, data, source=self.peer)
            expected.discard(cid)
            seen.add(cid)
            if cid.codec != RAW:
                expected.update(link for link in links_of(cid, data) if link not in seen and link.hash_code)
            yield block
        if expected:
            raise PeerError(
                f"{self.peer} ended the CAR of {self.root} with {len(expected)} blocks of the DAG missing "
                f"(for example {min(expected)})"
            )


# Deep enough to keep receiving and verifying while the store commits a 32 MiB batch (measured:
# 64 blocks 6.6-6.8 s, 256 blocks 6.1 s for 1 GiB node to node).
_PIPELINE_DEPTH: Final = 256  # verified blocks waiting for the store: 64 MiB of 256 KiB leaves
_END: Final = object()


class _Raised:
    """An exception of the receiving thread, carried to the consumer to be raised there."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _pipelined(blocks: Iterator[Block], depth: int = _PIPELINE_DEPTH) -> Generator[Block, None, None]:
    """``blocks`` produced by a receiving thread, consumed here through a bounded queue.

    The receive, parse and verify loop (socket reads and sha256 release the GIL) then runs
    while the consumer (the store's ``put_many`` and its writer threads) writes the previous
    blocks, instead of taking turns with it. The queue bounds memory; the producer's errors
    are raised here, in order, after the blocks it verified before failing. When the consumer
    stops early (a store error, a budget), the producer is told to stop, closes the stream
    and is joined: no thread outlives the call.
    """
    channel: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                channel.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not offer(block):
                    return
        except BaseException as exc:  # carried to the consumer, which raises it
            offer(_Raised(exc))
        else:
            offer(_END)
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="cats-fetch-receive", daemon=True)
    thread.start()
    try:
        while True:
            item = channel.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            assert isinstance(item, Block)
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                channel.get(timeout=0.1)
        thread.join()


def _fetch_car(
    store: BlockStore,
    root: CID,
    peers: Sequence[str],
    failures: list[PeerFailure],
    timeout: float,
    max_bytes: int | None = None,
    guard: PeerGuard | None = None,
) -> FetchReport | None:
    """Try each peer's CAR of the whole DAG; None when none delivered a complete, valid one."""
    for peer in peers:
        received = _pipelined(_CarStream(peer, root, timeout, guard).blocks())
        counted = _Counting(received, max_bytes)
        try:
            try:
                store.put_many(counted)
            finally:
                received.close()  # stops and joins the receiving thread whatever happened
        except BlockNotFoundError:
            continue  # not there: not a failure
        except (IntegrityError, PeerError, DecodeError) as exc:
            log.warning("skipping %s for the CAR of %s: %s", peer, root, exc)
            failures.append(PeerFailure(peer, root, str(exc)))
            continue
        return FetchReport(root, counted.count, counted.bytes, counted.count, counted.bytes, 0.0, "car")
    return None


def index_records(home: Path, root: CID) -> int:
    """Index every CATs record reachable from ``root`` through DAG-CBOR blocks; returns how many.

    Only DAG-CBOR blocks are read: records link to data (dag-pb, raw) but data never links back
    to records, so the walk never touches the bytes of datasets.
    """
    from ._node import Node

    with Node.open(home) as node:
        found: list[tuple[CID, Any]] = []
        seen: set[CID] = set()
        stack = [root]
        while stack:
            cid = stack.pop()
            if cid.codec != DAG_CBOR or cid in seen or not node.store.has(cid):
                continue
            seen.add(cid)
            data = node.store.get(cid)
            # DAG-CBOR that is not a CATs record is not indexed; its links are followed all the same.
            with contextlib.suppress(DecodeError):
                found.append((cid, decode_record(data)))
            stack.extend(links_of(cid, data))
        if found:
            node.catalog.index(found)
    return len(found)


# -- Orders between nodes ----------------------------------------------------------------------
def order_blocks(source: BlockSource, order_cid: CID) -> Iterator[Block]:
    """Every block a node needs to run an Order and record its provenance: the whole Order DAG.

    The Order, then the Function, Structure and input DAGs, then each parent BOM's whole DAG
    (its Order, Invoice, Function, Structure, inputs, output, log and its own parents, down to
    the first run): the node signs a BOM naming those parents and pins it, and a pin (like
    ``cats verify --structural``) needs every block the BOM reaches. A parent's output that is
    an input is carried once. The node's body limit bounds the total. Each block is yielded once.

    Raises:
        BlockNotFoundError: a block of the Order's DAG (a parent's included) is not in ``source``.
    """
    order_data = source.get(order_cid)
    order = OrderRecord.decode(order_data)
    seen: set[CID] = {order_cid.to_v1()}
    yield Block._trusted(order_cid, order_data)
    # Function first: a node reads the Order and its Function before anything else.
    for root in [order.function, order.structure, *order.inputs.values(), *order.parents]:
        try:
            for block in walk(source, root):
                if block.cid.to_v1() not in seen:
                    seen.add(block.cid.to_v1())
                    yield block
        except BlockNotFoundError as exc:
            hint = " (fetch the parent BOM with `cats fetch`)" if root in order.parents else ""
            raise BlockNotFoundError(
                f"expected the whole DAG of {root}, linked from Order {order_cid}, found it incomplete: "
                f"{exc}{hint}"
            ) from None


def check_parents(source: BlockSource, order: OrderRecord) -> None:
    """Refuse an Order whose parent BOMs are not what the Order claims they are.

    The BOM of the run will name these parents and be signed by the node, so each one must be a
    ``cats/bom`` record that produced one of the Order's inputs, with a signature that verifies
    when it has one. (Completeness of the parents' DAGs is checked with the rest of the Order.)

    Raises:
        InvalidInputError: a parent is missing, not a BOM, produced none of the inputs, or its
            signature does not verify.
    """
    inputs = {cid.to_v1() for cid in order.inputs.values()}
    for parent in order.parents:
        try:
            record = decode_record(source.get(parent))
        except BlockNotFoundError:
            raise InvalidInputError(f"expected the Order's parent BOM {parent}, found it missing") from None
        except DecodeError as exc:
            raise InvalidInputError(f"expected parent {parent} to be a cats/bom record: {exc}") from None
        if not isinstance(record, BOMRecord):
            raise InvalidInputError(f"expected parent {parent} to be a cats/bom record, found {record.TYPE}")
        if record.output.to_v1() not in inputs:
            raise InvalidInputError(
                f"expected parent BOM {parent} to have produced one of the Order's inputs, "
                f"found its output {record.output} is none of them"
            )
        if verify_bom_signature(record) is False:
            raise InvalidInputError(
                f"expected parent BOM {parent} to carry a valid signature of {record.issuer}, "
                "found one that does not verify"
            )


def load_order(source: BlockSource, order_cid: CID) -> tuple[OrderRecord, FunctionRecord]:
    """Decode an Order and its Function from ``source`` (strict record decoding)."""
    order = OrderRecord.decode(source.get(order_cid))
    function = decode_record(source.get(order.function))
    if not isinstance(function, FunctionRecord):
        raise InvalidInputError(
            f"expected the Order's function {order.function} to be a cats/function record, "
            f"found {type(function).__name__}"
        )
    return order, function


def fetch_order(
    home: Path,
    order_cid: CID,
    peers: Sequence[str],
    *,
    timeout: float = 30.0,
    max_bytes: int | None = None,
    guard: PeerGuard | None = None,
) -> FetchReport:
    """Fetch everything needed to run an Order (the DAGs :func:`order_blocks` sends) from peers.

    Args:
        home: The CATs home to fetch into.
        order_cid: The Order.
        peers: Gateway base URLs, asked in order.
        timeout: Seconds allowed per request.
        max_bytes: The most the Order's code, Structure, parents and inputs may fetch in all.
        guard: Connect only to this destination, within its deadline (see :func:`fetch_from_peers`).

    Raises:
        BlockNotFoundError: Some needed block is not available from any peer.
        LimitError: The Order needs more than ``max_bytes`` from the peers.
    """
    started = time.perf_counter()
    blocks = nbytes = fetched = fetched_bytes = 0
    failures: list[PeerFailure] = []
    repo = Repo.open(home)
    with httpx.Client(timeout=timeout) if guard is None else guard.client(timeout=timeout) as http:
        gateways = [GatewayBlockSource(p, http, timeout=timeout) for p in peers]
        chained = ChainedBlockSource(repo.blocks, gateways)
        order = OrderRecord.decode(chained.get(order_cid))
        # Parents before inputs: a parent's output that is an input then arrives once, with it.
        roots = [order.function, order.structure, *order.parents, *order.inputs.values()]
        for root in roots:
            budget = None if max_bytes is None else max_bytes - fetched_bytes
            report = fetch_from_peers(
                home, root, peers, pin=False, index=False, timeout=timeout, max_bytes=budget, guard=guard
            )
            blocks += report.blocks
            nbytes += report.bytes
            fetched += report.fetched
            fetched_bytes += report.fetched_bytes
            failures.extend(report.failures)
        failures.extend(PeerFailure(f.source, f.cid, str(f.error)) for f in chained.failures)
    return FetchReport(
        order_cid,
        blocks,
        nbytes,
        fetched,
        fetched_bytes,
        time.perf_counter() - started,
        "blocks",
        tuple(failures),
    )


def submit_order(
    home: Path,
    order_cid: CID,
    node_url: str,
    token: str,
    *,
    endorsements: Sequence[str] = (),
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Send an Order with its blocks (as a CAR body) to a node's ``POST /orders``.

    Args:
        home: The CATs home holding the Order and everything it links to.
        order_cid: The Order.
        node_url: The node's base URL.
        token: The submitting organization's bearer token for that node.
        endorsements: ``<did>.<signature>`` endorsements of the Function's code, sent as
            ``X-Cats-Endorsement`` headers.
        timeout: Seconds allowed for the request.

    Returns:
        The node's JSON answer (``{"run": id, "status": ..., ...}``).

    Raises:
        AuthError / LimitError / InvalidInputError / PeerError: mapped from the node's answer.
    """
    repo = Repo.open(home)
    # Spool to a temporary file: the body is streamed from disk, never held in memory whole.
    fd, tmp = tempfile.mkstemp(prefix=".order-", suffix=".car", dir=repo.home)
    try:
        with os.fdopen(fd, "w+b") as body:
            write_car(body, [order_cid], order_blocks(repo.blocks, order_cid))
            body.seek(0)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/vnd.ipld.car"}
            extra = [("X-Cats-Endorsement", e) for e in endorsements]
            try:
                response = httpx.post(
                    f"{node_url.rstrip('/')}/orders",
                    content=body,
                    headers=[*headers.items(), *extra],
                    timeout=timeout,
                )
            except httpx.HTTPError as exc:
                raise PeerError(f"cannot submit Order {order_cid} to {node_url}: {exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return raise_for_node_error(response, f"submitting Order {order_cid} to {node_url}")


def raise_for_node_error(response: httpx.Response, doing: str) -> dict[str, Any]:
    """The JSON body of a successful node answer, or the matching CatsError for a failed one."""
    from ..errors import (
        AuthError,
        CredentialsError,
        LimitError,
        NotFoundError,
        TooLargeError,
    )

    try:
        body: Any = response.json()
    except ValueError:
        body = {"message": response.text[:300]}
    if response.status_code < 400:
        if not isinstance(body, dict):
            raise PeerError(f"{doing}: expected a JSON object, found {type(body).__name__}")
        return body
    detail = body.get("message", body) if isinstance(body, dict) else body
    message = f"{doing}: HTTP {response.status_code}: {detail}"
    errors: Mapping[int, type[CatsError]] = {
        400: InvalidInputError,
        401: CredentialsError,
        403: AuthError,
        404: NotFoundError,
        413: TooLargeError,
        429: LimitError,
    }
    raise errors.get(response.status_code, PeerError)(message)


def run_status(node_url: str, run_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """A node's ``GET /orders/{id}`` answer."""
    try:
        response = httpx.get(f"{node_url.rstrip('/')}/orders/{run_id}", timeout=timeout)
    except httpx.HTTPError as exc:
        raise PeerError(f"cannot ask {node_url} about run {run_id}: {exc}") from exc
    return raise_for_node_error(response, f"asking {node_url} about run {run_id}")


def wait_for_run(
    node_url: str, run_id: str, *, timeout: float = 600.0, interval: float = 0.25
) -> dict[str, Any]:
    """Poll a run until it is ``succeeded`` or ``failed``; returns the last status.

    Raises:
        LimitError: The run did not settle within ``timeout`` seconds.
    """
    from ..errors import LimitError

    deadline = time.monotonic() + timeout
    while True:
        status = run_status(node_url, run_id)
        if status.get("status") in ("succeeded", "failed"):
            return status
        if time.monotonic() > deadline:
            raise LimitError(
                f"expected run {run_id} to settle within {timeout:g}s, found it {status.get('status')}"
            )
        time.sleep(interval)
        interval = min(interval * 1.5, 2.0)
