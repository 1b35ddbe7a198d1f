"""A thin, synchronous client for the Kubo RPC API (``/api/v0``) and a block store on top of it.

Why not a library: ``ipfshttpclient`` refuses every Kubo since 0.8 at connect time and is
unmaintained, and ``aioipfs`` crashes on ``add`` with current aiohttp. The RPC API is small and
stable, so CATs speaks it directly over httpx.

Facts of the protocol this module relies on (docs.ipfs.tech/reference/kubo/rpc):

- every command is ``POST /api/v0/<cmd>?arg=...`` (GET answers 405); uploads are multipart;
- errors come back as a non-2xx status with a JSON body ``{"Message", "Code", "Type": "error"}``;
- commands that may stream (``add``, ``dag/import``, ``pin/ls?stream=true``) answer NDJSON.

The RPC API is an admin API (it can read the node's config and private keys): it must only be
reached on loopback or through an authenticating proxy, never exposed.

Everything read back is verified: ``block_get`` hashes the bytes against the CID, and
:class:`KuboBlockStore.put` checks the CID the daemon computed equals the block's own.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Final, Literal, NoReturn

import httpx

from ..errors import BlockNotFoundError, InvalidInputError, PeerError
from ._car import write_car
from ._cid import CID, CODEC_NAMES, Block
from ._gateway import verified_car

__all__ = [
    "DagImportResult",
    "KuboAddResult",
    "KuboBlockStore",
    "KuboClient",
    "KuboVersion",
    "PinType",
]

log = logging.getLogger(__name__)

ServerKind = Literal["kubo", "js-ipfs"]
PinType = Literal["all", "direct", "indirect", "recursive"]
_PIN_TYPES: Final = ("all", "direct", "indirect", "recursive")

DEFAULT_TIMEOUT: Final = 60.0
CHUNKER: Final = "size-262144"  # Kubo's default chunker, spelled out so CIDs never drift with its defaults
_STREAM_CHUNK: Final = 1 << 16
# Kubo refuses blocks over 1 MiB unless allow-big-block is set (they would not travel over bitswap).
MAX_BLOCK_SIZE: Final = 1 << 20
# put_many sends a CAR per batch: big enough to amortise the request, small enough to bound memory.
_BATCH_BYTES: Final = 8 << 20
_BATCH_BLOCKS: Final = 4096

# Kubo error messages that mean "this node does not have that content" rather than "it broke".
_NOT_FOUND_MARKERS: Final = (
    "not found",
    "could not find",
    "no link named",
    "context deadline exceeded",
    "request timed out",
    "blockservice: key not found",
    "does not exist",
)


@dataclass(frozen=True)
class KuboVersion:
    """What ``/api/v0/version`` says about the daemon.

    Attributes:
        version: The daemon's version string (``"0.39.0"`` for Kubo, ``"0.18.1"`` for js-ipfs).
        commit: Source commit, possibly empty.
        repo: Repository format version.
        system: Platform string.
        kind: ``"kubo"`` or ``"js-ipfs"``: which RPC dialect the daemon speaks.
    """

    version: str
    commit: str
    repo: str
    system: str
    kind: ServerKind


@dataclass(frozen=True)
class KuboAddResult:
    """One entry of ``add``'s answer.

    Attributes:
        cid: Root CID of the added file.
        name: The name it was uploaded under.
        dag_size: Cumulative size of the DAG (Kubo's ``Size``: blocks plus link overhead,
            not the file length).
    """

    cid: CID
    name: str
    dag_size: int


@dataclass(frozen=True)
class DagImportResult:
    """What ``dag/import`` did.

    Attributes:
        roots: Root CIDs listed in the CAR header(s).
        pin_errors: For each root that could not be pinned, the daemon's message.
        blocks: Number of blocks imported, when the daemon reported it.
        bytes: Bytes of block data imported, when the daemon reported it.
    """

    roots: list[CID]
    pin_errors: dict[CID, str]
    blocks: int | None
    bytes: int | None


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _seconds(timeout: float) -> str:
    # Go duration syntax; whole milliseconds are accepted by both Kubo and js-ipfs (parse-duration).
    return f"{max(1, round(timeout * 1000))}ms"


class KuboClient:
    """Synchronous client for one Kubo (or js-ipfs) RPC endpoint.

    Every call is a POST with an explicit timeout; every failure becomes a
    :class:`~cats_runtime.errors.PeerError` (the daemon answered badly or not at all) or a
    :class:`~cats_runtime.errors.BlockNotFoundError` (it does not have the content), with the
    daemon's own message.

    Args:
        base_url: Where the RPC API listens, e.g. ``http://127.0.0.1:5001`` (the ``/api/v0``
            suffix is optional). Keep it on loopback: it is an admin API.
        timeout: Seconds allowed for connecting and between bytes of an answer, for every call.
        client: An ``httpx.Client`` to reuse (its connection pool, proxies, auth headers for a
            Kubo behind an authenticating proxy). The caller then owns it; otherwise this object
            creates one and :meth:`close` closes it.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:5001",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
    ) -> None:
        url = base_url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError(f"expected an http(s) URL for the Kubo RPC API, found {base_url!r}")
        if url.endswith("/api/v0"):
            url = url[: -len("/api/v0")]
        self.base_url: Final = url
        self.timeout: Final = timeout
        self._owns_client = client is None
        self._http = client if client is not None else httpx.Client(timeout=timeout)
        self._version: KuboVersion | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP connection pool (only when this object created it)."""
        if self._owns_client:
            self._http.close()

    def __enter__(self) -> KuboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KuboClient({self.base_url!r})"

    # -- the one place HTTP becomes CATs errors -----------------------------------------------
    def _url(self, cmd: str) -> str:
        return f"{self.base_url}/api/v0/{cmd}"

    def _fail(self, cmd: str, response: httpx.Response, subject: str | None) -> NoReturn:
        """Raise the CATs error for a non-2xx answer; ``response`` must have been read."""
        body = response.text
        message = body.strip()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("Message"), str):
            message = parsed["Message"]
        where = f"Kubo RPC at {self.base_url}"
        # Kubo answers unknown commands with 404 and GETs with 405; neither is about content.
        if response.status_code in (404, 405):
            raise PeerError(
                f"{where} does not offer {cmd!r} (HTTP {response.status_code}: {message[:200]!r}); "
                "expected a Kubo-compatible /api/v0"
            )
        lowered = message.lower()
        if subject is not None and any(marker in lowered for marker in _NOT_FOUND_MARKERS):
            raise BlockNotFoundError(f"{subject} not available from {where}: {message}")
        raise PeerError(f"{where} failed {cmd!r} with HTTP {response.status_code}: {message}")

    def _transport_error(self, cmd: str, exc: httpx.HTTPError, timeout: float) -> PeerError:
        if isinstance(exc, httpx.TimeoutException):
            return PeerError(f"Kubo RPC at {self.base_url} did not answer {cmd!r} within {timeout:g}s")
        return PeerError(f"cannot reach Kubo RPC at {self.base_url} for {cmd!r}: {exc}")

    def _post(
        self,
        cmd: str,
        params: Mapping[str, str | list[str]] | None = None,
        *,
        files: Mapping[str, Any] | None = None,
        subject: str | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """POST a command and return its fully read, successful answer."""
        limit = self.timeout if timeout is None else timeout
        try:
            response = self._http.post(self._url(cmd), params=params, files=files, timeout=limit)
        except httpx.HTTPError as exc:
            raise self._transport_error(cmd, exc, limit) from exc
        if response.is_error:
            self._fail(cmd, response, subject)
        return response

    def _stream(
        self,
        cmd: str,
        params: Mapping[str, str | list[str]] | None = None,
        *,
        files: Mapping[str, Any] | None = None,
        subject: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[bytes]:
        """POST a command and yield its answer in chunks as they arrive."""
        limit = self.timeout if timeout is None else timeout
        try:
            with self._http.stream(
                "POST", self._url(cmd), params=params, files=files, timeout=limit
            ) as response:
                if response.is_error:
                    response.read()
                    self._fail(cmd, response, subject)
                expected = response.headers.get("X-Content-Length")
                received = 0
                for chunk in response.iter_bytes(_STREAM_CHUNK):
                    received += len(chunk)
                    yield chunk
                # Kubo reports errors that happen mid-stream only in an HTTP trailer, which httpx
                # cannot read; a short answer is the visible symptom, so refuse it.
                if expected is not None and expected.isdigit() and received != int(expected):
                    raise PeerError(
                        f"Kubo RPC at {self.base_url} ended {cmd!r} after {received} of {expected} bytes"
                    )
        except httpx.HTTPError as exc:
            raise self._transport_error(cmd, exc, limit) from exc

    def _json(self, cmd: str, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise PeerError(
                f"Kubo RPC at {self.base_url} answered {cmd!r} with non-JSON: {response.text[:200]!r}"
            ) from exc

    def _ndjson(self, cmd: str, response: httpx.Response) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for line in response.text.splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise PeerError(
                    f"Kubo RPC at {self.base_url} answered {cmd!r} with a bad JSON line: {line[:200]!r}"
                ) from exc
            if not isinstance(item, dict):
                raise PeerError(f"Kubo RPC at {self.base_url} answered {cmd!r} with {item!r}")
            # Kubo streams an error object as the last line when a streaming command fails midway.
            if item.get("Type") == "error" and "Message" in item:
                raise PeerError(f"Kubo RPC at {self.base_url} failed {cmd!r}: {item['Message']}")
            out.append(item)
        return out

    def _cid(self, cmd: str, value: object) -> CID:
        if isinstance(value, dict) and isinstance(value.get("/"), str):
            value = value["/"]  # dag-json link form {"/": "bafy..."}
        if not isinstance(value, str):
            raise PeerError(f"Kubo RPC at {self.base_url} answered {cmd!r} with a non-CID {value!r}")
        try:
            return CID.decode(value)
        except ValueError as exc:
            raise PeerError(f"Kubo RPC at {self.base_url} answered {cmd!r} with a bad CID: {exc}") from exc

    # -- commands -----------------------------------------------------------------------------
    def version(self) -> KuboVersion:
        """The daemon's version, also telling which RPC dialect it speaks.

        Returns:
            The parsed ``/api/v0/version`` answer (cached after the first call).
        """
        if self._version is None:
            data = self._json("version", self._post("version"))
            if not isinstance(data, dict) or not isinstance(data.get("Version"), str):
                raise PeerError(f"Kubo RPC at {self.base_url} answered 'version' with {data!r}")
            # Kubo reports the Go toolchain it was built with; js-ipfs reports "ipfs-core" instead.
            kind: ServerKind = "js-ipfs" if "ipfs-core" in data and "Golang" not in data else "kubo"
            self._version = KuboVersion(
                version=data["Version"],
                commit=str(data.get("Commit", "")),
                repo=str(data.get("Repo", "")),
                system=str(data.get("System", "")),
                kind=kind,
            )
        return self._version

    @property
    def kind(self) -> ServerKind:
        """``"kubo"`` or ``"js-ipfs"`` (asks the daemon once)."""
        return self.version().kind

    def add(
        self,
        content: bytes | IO[bytes],
        *,
        name: str = "file",
        cid_version: int = 1,
        pin: bool = True,
        only_hash: bool = False,
        timeout: float | None = None,
    ) -> KuboAddResult:
        """Add one file, the way ``ipfs add --cid-version=1`` does.

        The chunker, leaf format and CID settings are always sent explicitly, so the resulting CID
        equals the one CATs' own importer computes whatever the daemon's configured defaults.

        Args:
            content: The file's bytes, or a binary stream (uploaded in chunks, never read whole).
            name: File name in the multipart upload (not part of the CID of a single file).
            cid_version: 1 (raw leaves, CATs' default) or 0 (dag-pb leaves, plain ``ipfs add``).
            pin: Pin the result recursively.
            only_hash: Compute the CID without storing anything.
            timeout: Seconds for this call instead of the client's default.

        Returns:
            The root CID, the upload name and the DAG size the daemon reported.
        """
        if cid_version not in (0, 1):
            raise InvalidInputError(f"expected cid_version 0 or 1, found {cid_version!r}")
        params = {
            "cid-version": str(cid_version),
            "raw-leaves": _flag(cid_version == 1),
            "chunker": CHUNKER,
            "hash": "sha2-256",
            "pin": _flag(pin),
            "only-hash": _flag(only_hash),
            "progress": "false",
            "wrap-with-directory": "false",
        }
        if cid_version == 1:
            # js-ipfs prints CIDv1 in base58btc unless told; it refuses any base for a CIDv0.
            params["cid-base"] = "base32"
        response = self._post(
            "add",
            params,
            files={"file": (name, content, "application/octet-stream")},
            timeout=timeout,
        )
        entries = self._ndjson("add", response)
        if not entries:
            raise PeerError(f"Kubo RPC at {self.base_url} answered 'add' with nothing")
        last = entries[-1]  # for a single file the only entry; the root comes last in any case
        try:
            return KuboAddResult(
                cid=self._cid("add", last.get("Hash")),
                name=str(last.get("Name", "")),
                dag_size=int(last.get("Size", 0)),  # a string in Kubo, a number in js-ipfs
            )
        except (TypeError, ValueError) as exc:
            raise PeerError(f"Kubo RPC at {self.base_url} answered 'add' with {last!r}") from exc

    def cat(
        self,
        cid: CID | str,
        *,
        offset: int | None = None,
        length: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[bytes]:
        """Stream a UnixFS file's content as the daemon reassembles it.

        The daemon verifies blocks; these bytes are not re-verified here (that needs the DAG).
        For content from an untrusted daemon, read blocks through :class:`KuboBlockStore` and the
        UnixFS reader instead.

        Args:
            cid: A CID, or an IPFS path such as ``bafy.../dir/file``.
            offset: First byte to return.
            length: Maximum number of bytes.
            timeout: Seconds allowed, both for the daemon's own search for missing blocks and for
                each wait on the socket. Without it, a daemon without the content may search the
                network for a long time (js-ipfs forever).

        Yields:
            Chunks of the file, in order.
        """
        limit = self.timeout if timeout is None else timeout
        params: dict[str, str | list[str]] = {"arg": str(cid), "timeout": _seconds(limit)}
        if offset is not None:
            params["offset"] = str(offset)
        if length is not None:
            params["length"] = str(length)
        # Allow the daemon's own deadline to fire (and explain itself) before ours does.
        return self._stream("cat", params, subject=f"content {cid}", timeout=limit + 1.0)

    def block_put(self, data: bytes, *, codec: int | str = "raw", pin: bool = False) -> CID:
        """Store one block as-is; the daemon computes and returns its CID (sha2-256, CIDv1).

        Args:
            data: The block's bytes (at most 1 MiB: Kubo refuses bigger blocks by default).
            codec: Multicodec of the block (code or name: ``raw``, ``dag-pb``, ``dag-cbor``...).
            pin: Pin the block.

        Returns:
            The CID the daemon computed. Callers that know the CID must compare it
            (:class:`KuboBlockStore` does).
        """
        name = CODEC_NAMES.get(codec, "") if isinstance(codec, int) else codec
        if not name:
            raise InvalidInputError(f"expected a codec in {sorted(CODEC_NAMES.values())}, found {codec!r}")
        params = {"mhtype": "sha2-256", "pin": _flag(pin)}
        if self.kind == "kubo":
            params["cid-codec"] = name
        else:
            # js-ipfs deviation: it predates Kubo's cid-codec and takes the codec as "format",
            # answering CIDv0 for dag-pb unless asked for version 1.
            params["format"] = name
            params["version"] = "1"
            params["cid-base"] = "base32"
        response = self._post(
            "block/put", params, files={"file": ("block", data, "application/octet-stream")}
        )
        answer = self._json("block/put", response)
        if not isinstance(answer, dict):
            raise PeerError(f"Kubo RPC at {self.base_url} answered 'block/put' with {answer!r}")
        return self._cid("block/put", answer.get("Key"))

    def block_get(self, cid: CID | str, *, timeout: float | None = None) -> bytes:
        """Fetch one block and verify it against its CID before returning it.

        Args:
            cid: The block's CID.
            timeout: Seconds allowed (also sent to the daemon as its search deadline).

        Raises:
            BlockNotFoundError: The daemon does not have the block (or could not find it in time).
            IntegrityError: The daemon returned bytes that do not hash to ``cid``.
        """
        key = CID.decode(cid)
        limit = self.timeout if timeout is None else timeout
        response = self._post(
            "block/get",
            {"arg": str(key), "timeout": _seconds(limit)},
            subject=f"block {key}",
            timeout=limit + 1.0,
        )
        data = response.content
        key.verify(data, source=f"Kubo RPC at {self.base_url}")
        return data

    def block_stat(
        self, cid: CID | str, *, offline: bool = False, timeout: float | None = None
    ) -> tuple[CID, int]:
        """The CID and size of a block the daemon has (or can find).

        Args:
            cid: The block's CID.
            offline: Do not look for the block on the network (Kubo's ``--offline``).
            timeout: Seconds allowed (also sent to the daemon as its search deadline).

        Returns:
            ``(cid, size_in_bytes)``.
        """
        key = CID.decode(cid)
        limit = self.timeout if timeout is None else timeout
        params = {"arg": str(key), "timeout": _seconds(limit)}
        if offline:
            params["offline"] = "true"
        response = self._post("block/stat", params, subject=f"block {key}", timeout=limit + 1.0)
        answer = self._json("block/stat", response)
        if not isinstance(answer, dict):
            raise PeerError(f"Kubo RPC at {self.base_url} answered 'block/stat' with {answer!r}")
        try:
            return self._cid("block/stat", answer.get("Key")), int(answer.get("Size", -1))
        except (TypeError, ValueError) as exc:
            raise PeerError(f"Kubo RPC at {self.base_url} answered 'block/stat' with {answer!r}") from exc

    def dag_import(
        self, car: bytes | IO[bytes], *, pin_roots: bool = True, timeout: float | None = None
    ) -> DagImportResult:
        """Upload a CARv1 (bytes or a stream, sent in chunks) into the daemon's blockstore.

        Args:
            car: The CAR file.
            pin_roots: Pin each root of the CAR header recursively (Kubo's default).
            timeout: Seconds for this call instead of the client's default.

        Returns:
            The roots, per-root pin errors and the import statistics.
        """
        # No cid-base here or in pin/ls: js-ipfs refuses to print a CIDv0 in base32, and CIDs are
        # parsed from any base anyway.
        params = {"pin-roots": _flag(pin_roots), "stats": "true"}
        response = self._post(
            "dag/import",
            params,
            files={"file": ("import.car", car, "application/vnd.ipld.car")},
            timeout=timeout,
        )
        roots: list[CID] = []
        errors: dict[CID, str] = {}
        blocks: int | None = None
        nbytes: int | None = None
        for item in self._ndjson("dag/import", response):
            root = item.get("Root")
            if isinstance(root, dict):
                cid = self._cid("dag/import", root.get("Cid"))
                roots.append(cid)
                if root.get("PinErrorMsg"):
                    errors[cid] = str(root["PinErrorMsg"])
            stats = item.get("Stats")
            if isinstance(stats, dict):
                blocks = int(stats.get("BlockCount", 0))
                nbytes = int(stats.get("BlockBytesCount", 0))
        return DagImportResult(roots=roots, pin_errors=errors, blocks=blocks, bytes=nbytes)

    def dag_export(self, cid: CID | str, *, timeout: float | None = None) -> Iterator[bytes]:
        """Stream the whole DAG under ``cid`` as a CARv1.

        Args:
            cid: The root.
            timeout: Seconds allowed per wait (also the daemon's search deadline for missing blocks).

        Yields:
            Chunks of the CAR stream, unverified. A failure after the answer started (a block the
            daemon cannot find) is reported only in an HTTP trailer, which httpx cannot read: the
            CAR then just ends early. Use :meth:`dag_export_blocks` unless you re-check the CAR.
        """
        limit = self.timeout if timeout is None else timeout
        params = {"arg": str(cid), "progress": "false", "timeout": _seconds(limit)}
        return self._stream("dag/export", params, subject=f"DAG {cid}", timeout=limit + 1.0)

    def dag_export_blocks(self, cid: CID | str, *, timeout: float | None = None) -> Iterator[Block]:
        """Export the DAG under ``cid`` as verified blocks: each hashed, all present, none extra.

        Args:
            cid: The root.
            timeout: As for :meth:`dag_export`.

        Yields:
            The DAG's blocks in the daemon's (depth-first) order, each once.

        Raises:
            PeerError: The CAR was malformed, ended before the whole DAG arrived (for instance
                the daemon does not have some block), or held a block not part of the DAG.
            IntegrityError: A block did not match its CID.
        """
        root = CID.decode(cid)
        return verified_car(root, self.dag_export(root, timeout=timeout), f"Kubo RPC at {self.base_url}")

    def pin_add(self, cid: CID | str, *, recursive: bool = True, timeout: float | None = None) -> list[CID]:
        """Pin ``cid`` (and, when recursive, everything it links to, fetching what is missing).

        Returns:
            The CIDs the daemon reports as pinned.
        """
        params = {"arg": str(cid), "recursive": _flag(recursive), "progress": "false"}
        limit = self.timeout if timeout is None else timeout
        params["timeout"] = _seconds(limit)
        response = self._post("pin/add", params, subject=f"DAG {cid}", timeout=limit + 1.0)
        return self._pins("pin/add", self._json("pin/add", response))

    def pin_rm(self, cid: CID | str, *, recursive: bool = True) -> list[CID]:
        """Remove the pin on ``cid``.

        Returns:
            The CIDs unpinned.

        Raises:
            PeerError: ``cid`` is not pinned (with the daemon's message).
        """
        response = self._post("pin/rm", {"arg": str(cid), "recursive": _flag(recursive)})
        return self._pins("pin/rm", self._json("pin/rm", response))

    def pin_ls(self, cid: CID | str | None = None, *, type: PinType = "all") -> dict[CID, str]:
        """List pins, optionally only whether ``cid`` is pinned.

        Args:
            cid: Only this CID (the daemon answers an error when it is not pinned).
            type: Which pins: ``all``, ``direct``, ``indirect`` or ``recursive``.

        Returns:
            A mapping of pinned CID to its pin type (``recursive``, ``direct`` or ``indirect``);
            empty when ``cid`` is given and not pinned.
        """
        if type not in _PIN_TYPES:
            raise InvalidInputError(f"expected a pin type in {_PIN_TYPES}, found {type!r}")
        params: dict[str, str | list[str]] = {"type": type}
        if cid is not None:
            params["arg"] = str(cid)
        try:
            answer = self._json("pin/ls", self._post("pin/ls", params))
        except PeerError as exc:
            # Asking about one CID that is not pinned is an error to the daemon, an answer to us.
            if cid is not None and "is not pinned" in str(exc):
                return {}
            raise
        keys = answer.get("Keys") if isinstance(answer, dict) else None
        if not isinstance(keys, dict):
            raise PeerError(f"Kubo RPC at {self.base_url} answered 'pin/ls' with {answer!r}")
        out: dict[CID, str] = {}
        for key, info in keys.items():
            kind = str(info.get("Type") or "") if isinstance(info, dict) else ""
            # Asked about one CID, daemons say "indirect through <parent>": keep the type only.
            out[self._cid("pin/ls", key)] = kind.split(" ", 1)[0]
        return out

    def _pins(self, cmd: str, answer: Any) -> list[CID]:
        pins = answer.get("Pins") if isinstance(answer, dict) else None
        if not isinstance(pins, list):
            raise PeerError(f"Kubo RPC at {self.base_url} answered {cmd!r} with {answer!r}")
        return [self._cid(cmd, p) for p in pins]


class KuboBlockStore:
    """A :class:`~cats_runtime.cas.BlockStore` backed by a Kubo daemon's blockstore.

    Reads are verified against their CID; writes check that the CID the daemon computed is the
    block's own (same multihash and codec; Kubo keys blocks by multihash, so a CIDv0 block is
    stored and found under its CIDv1 form too).

    Args:
        client: The RPC client to use.
        pin: Pin every block written with a direct pin. Off by default: pin roots recursively
            with :meth:`KuboClient.pin_add` once a whole DAG is in.
        timeout: Seconds allowed per block read; reads never search the network for longer.
    """

    def __init__(self, client: KuboClient, *, pin: bool = False, timeout: float = 10.0) -> None:
        self.client: Final = client
        self.pin: Final = pin
        self.timeout: Final = timeout

    def __repr__(self) -> str:
        return f"KuboBlockStore({self.client.base_url!r})"

    def get(self, cid: CID) -> bytes:
        """Return the block's bytes, verified against ``cid``.

        Raises:
            BlockNotFoundError: The daemon does not have it (or could not find it in time).
            IntegrityError: The daemon returned the wrong bytes.
        """
        return self.client.block_get(cid, timeout=self.timeout)

    def has(self, cid: CID) -> bool:
        """True when the daemon has the block locally (it does not search the network).

        Kubo answers at once (``offline=true``). js-ipfs ignores ``offline``, so a missing block
        costs it a short search deadline (0.5 s) instead.
        """
        deadline = min(self.timeout, 0.5 if self.client.kind == "js-ipfs" else 5.0)
        try:
            self.client.block_stat(cid, offline=True, timeout=deadline)
        except BlockNotFoundError:
            return False
        return True

    def put(self, block: Block) -> None:
        """Store a block; raises PeerError if the daemon files it under another CID."""
        if len(block.data) > MAX_BLOCK_SIZE:
            raise InvalidInputError(
                f"expected a block of at most {MAX_BLOCK_SIZE} bytes for Kubo, found {len(block.data)} "
                f"bytes in {block.cid}"
            )
        returned = self.client.block_put(block.data, codec=block.cid.codec)
        if returned.to_v1() != block.cid.to_v1():
            raise PeerError(
                f"Kubo RPC at {self.client.base_url} stored block {block.cid} as {returned}; "
                "expected the same codec and multihash"
            )
        if self.pin:
            # Direct, not block/put's recursive pin: the block's children may not be stored yet,
            # and a recursive pin would send the daemon looking for them on the network.
            self.client.pin_add(block.cid, recursive=False)

    def put_many(self, blocks: Iterable[Block]) -> None:
        """Store many blocks, uploaded in batches as CAR files through ``dag/import``.

        One request per batch instead of one per block (``block/put`` costs a round trip and a
        multipart parse each: for 500 blocks of 1 KiB against js-ipfs, 2-5x slower). The CIDs
        travel inside the CAR, so there is no daemon-computed CID to check; nothing is pinned
        unless ``pin`` is set. Idempotent: a retry after a failure is safe.
        """
        batch: list[Block] = []
        size = 0
        for block in blocks:
            if len(block.data) > MAX_BLOCK_SIZE:
                raise InvalidInputError(
                    f"expected a block of at most {MAX_BLOCK_SIZE} bytes for Kubo, found "
                    f"{len(block.data)} bytes in {block.cid}"
                )
            batch.append(block)
            size += len(block.data)
            if size >= _BATCH_BYTES or len(batch) >= _BATCH_BLOCKS:
                self._import(batch)
                batch, size = [], 0
        if batch:
            self._import(batch)

    def _import(self, batch: list[Block]) -> None:
        if len(batch) == 1 and not self.pin:
            self.put(batch[0])
            return
        car = io.BytesIO()
        # A CARv1 header needs a root: the first block serves (pin_roots=False keeps it unpinned).
        write_car(car, [batch[0].cid], batch)
        car.seek(0)
        self.client.dag_import(car, pin_roots=False)
        if self.pin:
            for block in batch:  # direct pins, as put() makes
                self.client.pin_add(block.cid, recursive=False)
