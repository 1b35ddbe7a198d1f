"""Fetching blocks from other nodes over the IPFS trustless gateway protocol, and chaining sources.

A trustless gateway (specs.ipfs.tech/http-gateways/trustless-gateway) serves verifiable
responses only: single blocks (``application/vnd.ipld.raw``) and CAR streams
(``application/vnd.ipld.car``). "Trustless" means the client checks everything: every block is
hashed against the CID it was asked for, and every block of a CAR must be reachable from the
requested root, so a lying or broken peer can waste time but never inject data.

:class:`ChainedBlockSource` reads a local store first and falls back to remote sources in order,
writing what it fetched into the local store; peers that misbehave are logged, recorded in
``failures`` and skipped.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Final

import httpx

from ..errors import (
    BlockNotFoundError,
    CARFormatError,
    CatsError,
    IntegrityError,
    InvalidInputError,
    LimitError,
    PeerError,
)
from ._car import read_car
from ._cid import CID, IDENTITY, Block
from ._store import BlockSource, BlockStore
from ._walk import links_of

__all__ = [
    "ChainedBlockSource",
    "FetchResult",
    "GatewayBlockSource",
    "SourceFailure",
    "verified_car",
    "verified_dag",
]

log = logging.getLogger(__name__)

RAW_MEDIA_TYPE: Final = "application/vnd.ipld.raw"
CAR_MEDIA_TYPE: Final = "application/vnd.ipld.car"
# Bitswap's limit: no honest peer serves a bigger block, so reading more is only a way to be DoSed.
MAX_BLOCK_SIZE: Final = 2 * 1024 * 1024
DEFAULT_TIMEOUT: Final = 30.0
_CHUNK: Final = 1 << 16


class ResponseReader(io.RawIOBase):
    """A read-only binary stream over an iterator of byte chunks (a streamed HTTP body).

    Lets the CAR reader, which wants a file, consume an answer as it arrives.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = memoryview(chunk)
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]  # a view: no copy of the rest of the chunk
        return n


def verified_car(root: CID, chunks: Iterator[bytes], peer: str) -> Iterator[Block]:
    """Parse a streamed CARv1 that should hold exactly the DAG under ``root``, checking everything.

    Args:
        root: The DAG's root; the CAR header must list it.
        chunks: The CAR's bytes as they arrive.
        peer: Names the sender in errors.

    Yields:
        Verified blocks of the DAG, each once, in the order received.

    Raises:
        PeerError: A malformed CAR, a header without ``root``, a block outside the DAG, or a
            stream that ended before the whole DAG arrived.
        IntegrityError: A block did not match its CID (names the peer).
    """
    try:
        # Buffered, so the reader's one-byte varint reads do not each cost a call.
        reader = read_car(io.BufferedReader(ResponseReader(chunks), buffer_size=_CHUNK))
        if root not in reader.roots:
            raise PeerError(f"{peer} sent a CAR with roots {[str(r) for r in reader.roots]}; expected {root}")
        yield from verified_dag(root, reader, peer)
    except CARFormatError as exc:
        raise PeerError(f"{peer} sent a malformed CAR for {root}: {exc}") from exc


class GatewayBlockSource:
    """A :class:`~cats_runtime.cas.BlockSource` reading another node's trustless gateway.

    Args:
        base_url: The gateway's origin, e.g. ``https://node.example.org`` (requests go to
            ``{base_url}/ipfs/{cid}``).
        client: An ``httpx.Client`` to reuse (shared pool, auth headers); the caller owns it.
            Otherwise one is created and :meth:`close` closes it.
        timeout: Seconds allowed for connecting and between bytes, on every request.
        max_block_size: Largest block accepted; a peer sending more is cut off.
    """

    def __init__(
        self,
        base_url: str,
        client: httpx.Client | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_block_size: int = MAX_BLOCK_SIZE,
    ) -> None:
        url = base_url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError(f"expected an http(s) gateway URL, found {base_url!r}")
        self.base_url: Final = url
        self.timeout: Final = timeout
        self.max_block_size: Final = max_block_size
        self._owns_client = client is None
        self._http = client if client is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connection pool (only when this object created it)."""
        if self._owns_client:
            self._http.close()

    def __enter__(self) -> GatewayBlockSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GatewayBlockSource({self.base_url!r})"

    @property
    def peer(self) -> str:
        """How errors name this peer."""
        return f"gateway {self.base_url}"

    def _check_status(self, response: httpx.Response, what: str, cid: CID) -> None:
        if response.status_code == 200:
            return
        if response.status_code in (404, 410, 412):
            raise BlockNotFoundError(f"{what} {cid} not found at {self.peer} (HTTP {response.status_code})")
        # The body is not echoed: a node fetching for a remote submitter must not relay what an
        # address it was pointed at says (server-side request forgery read-back).
        raise PeerError(f"{self.peer} answered {what} {cid} with HTTP {response.status_code}, expected 200")

    def get(self, cid: CID) -> bytes:
        """Fetch one block (``?format=raw``) and verify it against ``cid``.

        Raises:
            BlockNotFoundError: The gateway does not have it.
            IntegrityError: The gateway sent bytes that do not hash to ``cid`` (names the peer).
            PeerError: The gateway failed, timed out or sent more than ``max_block_size`` bytes.
        """
        if cid.hash_code == IDENTITY:
            return cid.digest  # the data is the CID; nobody needs to be asked
        url = f"{self.base_url}/ipfs/{cid}"
        try:
            with self._http.stream(
                "GET", url, params={"format": "raw"}, headers={"Accept": RAW_MEDIA_TYPE}
            ) as response:
                if response.status_code != 200:
                    self._check_status(response, "block", cid)
                parts: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > self.max_block_size:
                        raise PeerError(
                            f"{self.peer} sent more than {self.max_block_size} bytes for block {cid}; "
                            "expected one block"
                        )
                    parts.append(chunk)
        except httpx.TimeoutException as exc:
            raise PeerError(f"{self.peer} did not answer for block {cid} within {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise PeerError(f"cannot fetch block {cid} from {self.peer}: {exc}") from exc
        data = b"".join(parts)
        cid.verify(data, source=self.peer)
        return data

    def has(self, cid: CID) -> bool:
        """Ask the gateway whether it holds the block without it searching elsewhere.

        Uses ``HEAD`` with ``Cache-Control: only-if-cached`` (the gateway answers 412 when the
        block is not local). Failures answer False: ``has`` is a hint, ``get`` is the truth.
        """
        if cid.hash_code == IDENTITY:
            return True
        try:
            response = self._http.head(
                f"{self.base_url}/ipfs/{cid}",
                params={"format": "raw"},
                headers={"Accept": RAW_MEDIA_TYPE, "Cache-Control": "only-if-cached"},
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def fetch_car(self, root: CID) -> Iterator[Block]:
        """Stream the whole DAG under ``root`` as one CAR (``dag-scope=all``), verifying as it goes.

        Every block is hashed against its CID by the CAR reader, and must be reachable from
        ``root`` through blocks already received (the request asks for depth-first order), so a
        peer cannot slip in unrelated blocks.

        Yields:
            Verified blocks, root first.

        Raises:
            PeerError: The gateway failed, sent a block not reachable from ``root``, or ended the
                CAR before every block of the DAG arrived.
            IntegrityError: A block's bytes do not match its CID.
            BlockNotFoundError: The gateway does not have ``root``.
        """
        url = f"{self.base_url}/ipfs/{root}"
        accept = f"{CAR_MEDIA_TYPE}; version=1; order=dfs; dups=n"
        try:
            with self._http.stream(
                "GET", url, params={"format": "car", "dag-scope": "all"}, headers={"Accept": accept}
            ) as response:
                if response.status_code != 200:
                    self._check_status(response, "DAG", root)
                yield from verified_car(root, response.iter_bytes(_CHUNK), self.peer)
        except httpx.TimeoutException as exc:
            raise PeerError(f"{self.peer} stalled for {self.timeout:g}s sending the CAR of {root}") from exc
        except httpx.HTTPError as exc:
            raise PeerError(f"cannot fetch the CAR of {root} from {self.peer}: {exc}") from exc


def verified_dag(root: CID, blocks: Iterable[Block], peer: str) -> Iterator[Block]:
    """Check that a stream of blocks (from a CAR) is exactly the DAG under ``root``.

    The CAR reader has already hashed every block against its CID; this adds what a CAR alone
    cannot promise: each block must be reachable from ``root`` through blocks seen before it
    (depth-first or breadth-first order, duplicates allowed), and every block the DAG links to
    must arrive. A peer can therefore neither inject unrelated blocks nor silently truncate.

    Args:
        root: The DAG's root.
        blocks: Verified blocks in the order received.
        peer: Names the sender in errors.

    Yields:
        The blocks, each once.

    Raises:
        PeerError: A block not reachable from ``root``, or the stream ended with blocks missing.
        IntegrityError: Raised by the CAR reader, re-raised naming the peer.
    """
    expected: set[CID] = {root}
    seen: set[CID] = set()
    try:
        for block in blocks:
            if block.cid in seen:
                continue
            if block.cid not in expected:
                raise PeerError(
                    f"{peer} sent block {block.cid} in the CAR of {root}, which is not reachable "
                    "from it through the blocks sent before"
                )
            expected.discard(block.cid)
            seen.add(block.cid)
            for link in links_of(block.cid, block.data):
                if link not in seen and link.hash_code != IDENTITY:
                    expected.add(link)
            yield block
    except IntegrityError as exc:
        raise IntegrityError(f"{exc} (in the CAR from {peer})") from exc
    if expected:
        raise PeerError(
            f"{peer} ended the CAR of {root} with {len(expected)} blocks of the DAG missing "
            f"(for example {min(expected)})"
        )


@dataclass(frozen=True)
class SourceFailure:
    """A remote source that misbehaved for one CID.

    Attributes:
        source: ``repr`` of the source.
        cid: The CID asked for.
        error: What went wrong (an IntegrityError or a PeerError).
    """

    source: str
    cid: CID
    error: CatsError


@dataclass(frozen=True)
class FetchResult:
    """What :meth:`ChainedBlockSource.fetch_dag` did.

    Attributes:
        root: The DAG's root.
        blocks: Blocks in the DAG (each counted once).
        bytes: Total bytes of those blocks.
        fetched: Blocks that came from a remote source (the rest were already local).
        fetched_bytes: Bytes of the fetched blocks.
    """

    root: CID
    blocks: int
    bytes: int
    fetched: int
    fetched_bytes: int


class ChainedBlockSource:
    """Read a local store first, then each remote source in order; keep what was fetched.

    A remote that serves a wrong block (IntegrityError) or fails (PeerError) is logged, recorded
    in :attr:`failures` and skipped; the next one is tried. A remote that simply does not have
    the block is not a failure.

    Args:
        local: The store to read first and to write fetched blocks into.
        remotes: Sources to try in order (gateways, Kubo block stores, other stores).
    """

    def __init__(self, local: BlockStore, remotes: Sequence[BlockSource]) -> None:
        self.local: Final = local
        self.remotes: Final = tuple(remotes)
        self._failures: list[SourceFailure] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ChainedBlockSource({self.local!r}, {list(self.remotes)!r})"

    @property
    def failures(self) -> list[SourceFailure]:
        """A copy of every misbehaviour seen so far, oldest first."""
        with self._lock:
            return list(self._failures)

    def has(self, cid: CID) -> bool:
        """True when the block is in the local store (remotes are not asked)."""
        return self.local.has(cid)

    def get(self, cid: CID) -> bytes:
        """Return the block from the local store, or fetch, verify and store it from a remote.

        Raises:
            BlockNotFoundError: No source had a correct copy (the message lists who failed how).
            IntegrityError: The local copy is corrupt (repair the store: a chain never hides that).
        """
        return self._get(cid)[0]

    def _get(self, cid: CID) -> tuple[bytes, bool]:
        """The block's bytes and whether they had to be fetched."""
        if cid.hash_code == IDENTITY:
            return cid.digest, False
        try:
            return self.local.get(cid), False
        except BlockNotFoundError:
            pass
        problems: list[str] = []
        for remote in self.remotes:
            try:
                data = remote.get(cid)
                # Remotes are untrusted even when their own get() claims to verify.
                block = Block.checked(cid, data, source=repr(remote))
            except BlockNotFoundError:
                continue
            except (IntegrityError, PeerError) as exc:
                log.warning("skipping %r for block %s: %s", remote, cid, exc)
                with self._lock:
                    self._failures.append(SourceFailure(repr(remote), cid, exc))
                problems.append(f"{remote!r}: {exc}")
                continue
            self.local.put(block)
            return block.data, True
        tried = ", ".join(repr(r) for r in self.remotes) or "no remote"
        detail = f"; failures: {'; '.join(problems)}" if problems else ""
        raise BlockNotFoundError(f"block {cid} not found locally nor at {tried}{detail}")

    def fetch_dag(self, root: CID, parallelism: int = 8, max_bytes: int | None = None) -> FetchResult:
        """Make the whole DAG under ``root`` local, fetching blocks in parallel.

        Blocks are fetched as their parents arrive (breadth-first over a thread pool); links are
        read with the codec of each block, so dag-pb, dag-cbor and raw DAGs all work.

        Args:
            root: The DAG's root.
            parallelism: Maximum concurrent block fetches.
            max_bytes: Refuse to fetch more than this many bytes from remotes (None: no limit).

        Returns:
            Counts of blocks and bytes, total and fetched.

        Raises:
            LimitError: the remotes would have to send more than ``max_bytes``.
            BlockNotFoundError: Some block could not be found anywhere (nothing is rolled back:
                blocks already fetched stay in the local store, so a retry resumes).
        """
        if parallelism < 1:
            raise InvalidInputError(f"expected parallelism >= 1, found {parallelism}")
        seen: set[CID] = {root}
        blocks = nbytes = fetched = fetched_bytes = 0
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="cats-fetch") as pool:
            pending: dict[Future[tuple[bytes, bool]], CID] = {pool.submit(self._get, root): root}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        cid = pending.pop(future)
                        data, was_fetched = future.result()
                        blocks += 1
                        nbytes += len(data)
                        if was_fetched:
                            fetched += 1
                            fetched_bytes += len(data)
                            if max_bytes is not None and fetched_bytes > max_bytes:
                                raise LimitError(
                                    f"expected the DAG of {root} to need at most {max_bytes} fetched bytes, "
                                    f"found more ({fetched_bytes} after {fetched} blocks)"
                                )
                        for link in links_of(cid, data):
                            if link not in seen:
                                seen.add(link)
                                pending[pool.submit(self._get, link)] = link
            finally:
                for future in pending:
                    future.cancel()
        return FetchResult(root, blocks, nbytes, fetched, fetched_bytes)
