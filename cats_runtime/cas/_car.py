"""CARv1 archives (Content Addressable aRchives), streamed both ways.

Format (ipld.io CARv1 spec)::

    varint(len(header)) header        header = DAG-CBOR {"roots": [CID, ...], "version": 1}
    varint(len(cid) + len(data)) cid data     one section per block, cid in binary form

``ipfs dag export`` writes the DAG depth-first pre-order, each block once; CIDv0 blocks keep
their 34-byte CIDv0 form in their section, which the spec allows and :func:`read_car` accepts.
Reading is strict: anything malformed raises :class:`~cats_runtime.errors.CARFormatError`
with the byte offset, every block is verified against its CID
(:class:`~cats_runtime.errors.IntegrityError`), and nothing ever holds the whole CAR in memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any, BinaryIO, Final

from ..errors import BlockNotFoundError, CARFormatError, DecodeError, InvalidInputError, StoreError
from ._blockstore import FSBlockStore
from ._carv2 import CARV2_HEADER_SIZE, CARV2_PRAGMA, decode_v2_header, write_car_v2
from ._cid import CID, Block
from ._dagcbor import decode as decode_dagcbor
from ._dagcbor import encode as encode_dagcbor
from ._packstore import PackedBlockStore
from ._store import BlockSource, BlockStore
from ._varint import encode_varint
from ._walk import walk

__all__ = [
    "MAX_SECTION",
    "CarFileSource",
    "CarReader",
    "export_car",
    "import_car",
    "read_car",
    "write_car",
]

MAX_SECTION: Final = 8 * 1024 * 1024 + 1024
"""Largest section :func:`read_car` accepts: an 8 MiB block plus room for its CID.

Kubo refuses blocks over 2 MiB on the network (4 MiB with ``--allow-big-block``); the bound
stops a forged length from making the reader allocate gigabytes.
"""
MAX_HEADER: Final = 1024 * 1024
"""Largest header accepted (about 27,000 CIDv1 roots)."""

_VARINT_MAX_BYTES: Final = 9


def _header_bytes(roots: list[CID]) -> bytes:
    if not roots:
        raise InvalidInputError("expected at least one root CID for a CAR, found none")
    for root in roots:
        if not isinstance(root, CID):
            raise InvalidInputError(f"expected CID roots, found {type(root).__name__}")
    header = encode_dagcbor({"roots": list(roots), "version": 1})
    return encode_varint(len(header)) + header


def write_car(out: BinaryIO | IO[bytes], roots: list[CID], blocks: Iterable[Block]) -> int:
    """Write a CARv1 with ``roots`` and ``blocks`` (in the order given) to ``out``.

    Returns:
        The number of blocks written.

    Raises:
        InvalidInputError: ``roots`` is empty or holds something other than CIDs.
    """
    out.write(_header_bytes(roots))
    count = 0
    for block in blocks:
        cid = block.cid.buffer
        out.write(encode_varint(len(cid) + len(block.data)) + cid)
        out.write(block.data)
        count += 1
    return count


def _dag_blocks(source: BlockSource, roots: list[CID]) -> Iterator[Block]:
    seen: set[CID] = set()
    for root in roots:
        for block in walk(source, root):
            if block.cid not in seen:  # roots sharing subtrees: each block once in the whole CAR
                seen.add(block.cid)
                yield block


def export_car(source: BlockSource, roots: list[CID], out: BinaryIO | IO[bytes], *, version: int = 1) -> int:
    """Write the complete DAGs under ``roots`` as a CARv1, like ``ipfs dag export``.

    Blocks are streamed depth-first pre-order (each root's DAG in turn), each block once.
    ``version=2`` writes a CARv2 with a ``MultihashIndexSorted`` index instead (as go-car and
    Lassie do); ``out`` must then be seekable.

    Returns:
        The number of blocks written.

    Raises:
        BlockNotFoundError: a block of the DAGs is missing (the output is then incomplete:
            write to a temporary file when that matters).
        IntegrityError: a block does not match its CID.
    """
    if version == 2:
        _header_bytes(roots)  # refuse bad roots before anything is written
        return write_car_v2(out, roots, _dag_blocks(source, roots))
    if version != 1:
        raise InvalidInputError(f"expected CAR version 1 or 2, found {version!r}")
    return write_car(out, roots, _dag_blocks(source, roots))


class CarReader:
    """A CARv1 or CARv2 being read: :attr:`roots` from the header, then iterate for verified blocks.

    A CARv2 is read as its CARv1 data payload: the 40-byte header gives where the payload starts
    and how long it is; the index after it is never read (an index is not verified data, and
    every block is hash-checked anyway). Iterating consumes the stream, so a reader can be
    iterated once.

    Attributes:
        roots: the (payload's) header's root CIDs.
        version: 1, or 2 for a CARv2.
    """

    def __init__(self, stream: BinaryIO | IO[bytes], *, max_section: int = MAX_SECTION) -> None:
        self._stream = stream
        self._offset = 0
        self._end: int | None = None  # end of a CARv2 data payload (absolute offset)
        self._max_section = max_section
        self._started = False
        self.version = 1
        self.roots: tuple[CID, ...] = self._read_header()

    def _read(self, n: int, what: str) -> bytes:
        start = self._offset
        if self._end is not None and start + n > self._end:
            raise CARFormatError(
                f"expected the {what} at byte {start} to end within the CARv2 data payload "
                f"(ending at byte {self._end}), found {n} bytes"
            )
        chunks: list[bytes] = []
        remaining = n
        while remaining:
            chunk = self._stream.read(remaining)
            if not chunk:
                got = n - remaining
                raise CARFormatError(f"truncated {what} at byte {start}: expected {n} bytes, found {got}")
            chunks.append(chunk)
            remaining -= len(chunk)
        self._offset += n
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _varint(self, what: str) -> int | None:
        """Read a varint; ``None`` on a clean end of stream before its first byte."""
        start = self._offset
        if self._end is not None and start >= self._end:
            return None  # the CARv2 payload ends here; its index may follow
        value = 0
        for i in range(_VARINT_MAX_BYTES):
            if self._end is not None and self._offset >= self._end:
                raise CARFormatError(f"truncated {what} varint at byte {start}: the CARv2 data payload ends")
            b = self._stream.read(1)
            if not b:
                if i == 0:
                    return None
                raise CARFormatError(f"truncated {what} varint at byte {start}")
            self._offset += 1
            byte = b[0]
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise CARFormatError(f"expected a minimal {what} varint at byte {start}, found padding")
                return value
        raise CARFormatError(f"expected a {what} varint of at most {_VARINT_MAX_BYTES} bytes at byte {start}")

    def _read_header(self) -> tuple[CID, ...]:
        length = self._varint("header length")
        if length is None:
            raise CARFormatError("expected a CAR header at byte 0, found an empty stream")
        if length == 0 or length > MAX_HEADER:
            raise CARFormatError(f"expected a header length in [1, {MAX_HEADER}] at byte 0, found {length}")
        start = self._offset
        raw = self._read(length, "header")
        try:
            header: Any = decode_dagcbor(raw)
        except DecodeError as exc:
            raise CARFormatError(f"expected a DAG-CBOR header at byte {start}: {exc}") from None
        if not isinstance(header, dict):
            raise CARFormatError(
                f"expected the header at byte {start} to be a map, found {type(header).__name__}"
            )
        version = header.get("version")
        if version == 2 and not isinstance(version, bool) and start == 1 and self._end is None:
            if raw != CARV2_PRAGMA[1:]:
                raise CARFormatError(
                    f"expected the CARv2 pragma {{'version': 2}} at byte 0, found {header!r}"
                )
            self._enter_payload()
            self.version = 2
            return self._read_header()
        if version != 1 or isinstance(version, bool):
            raise CARFormatError(
                f"expected CAR header version 1 (or a CARv2) at byte {start}, found {version!r}"
            )
        if set(header) != {"roots", "version"}:
            raise CARFormatError(
                f"expected header keys ['roots', 'version'] at byte {start}, found {sorted(header)}"
            )
        roots = header["roots"]
        if not isinstance(roots, list) or not roots or not all(isinstance(r, CID) for r in roots):
            raise CARFormatError(f"expected a non-empty list of root CIDs in the header at byte {start}")
        return tuple(roots)

    def _enter_payload(self) -> None:
        header = decode_v2_header(self._read(CARV2_HEADER_SIZE, "CARv2 header"))
        self._skip(header.data_offset - self._offset, "CARv2 padding before the data payload")
        self._end = header.data_offset + header.data_size

    def _skip(self, n: int, what: str) -> None:
        while n > 0:
            step = min(n, 1 << 16)
            self._read(step, what)
            n -= step

    def __iter__(self) -> Iterator[Block]:
        return (block for block, _ in self.located())

    def located(self) -> Iterator[tuple[Block, int]]:
        """Iterate the verified blocks with the byte offset of each block's data in the stream.

        Like iterating the reader, this consumes the stream (once).
        """
        if self._started:
            raise CARFormatError("a CAR stream can be read once; open it again to re-read")
        self._started = True
        return self._sections()

    def _sections(self) -> Iterator[tuple[Block, int]]:
        while True:
            start = self._offset
            length = self._varint("section length")
            if length is None:
                return
            if length == 0:
                raise CARFormatError(f"expected a non-empty section at byte {start}, found length 0")
            if length > self._max_section:
                raise CARFormatError(
                    f"expected a section of at most {self._max_section} bytes at byte {start}, found {length}"
                )
            body = self._read(length, "section")
            try:
                cid, end = CID.read(body, 0)
            except (InvalidInputError, DecodeError) as exc:
                raise CARFormatError(f"expected a CID in the section at byte {start}: {exc}") from None
            block = Block.checked(cid, body[end:], source=f"CAR section at byte {start}")
            yield block, self._offset - len(block.data)


def read_car(stream: BinaryIO | IO[bytes], *, max_section: int = MAX_SECTION) -> CarReader:
    """Open a CARv1 or CARv2 stream: reads and checks the header now, blocks as they are iterated.

    Raises:
        CARFormatError: the header is malformed (later: a malformed section).
        IntegrityError: (while iterating) a block does not match its CID.
    """
    return CarReader(stream, max_section=max_section)


def import_car(
    store: BlockStore, stream: BinaryIO | IO[bytes], *, max_section: int = MAX_SECTION
) -> list[CID]:
    """Add every block of a CARv1 (or a CARv2's data payload) to ``store``, all or nothing.

    The whole stream is read and verified first, new blocks being spooled to a temporary file
    (next to the store when it is an :class:`FSBlockStore`, so large imports do not fill
    ``/tmp``); only then are they put. A truncated or corrupt CAR therefore leaves the store
    exactly as it was. Blocks already present are neither rewritten nor ever deleted. (Only a
    store failure during the final put, such as a full disk, can leave some of the new blocks
    stored; each is complete and verified, and gc removes them unless they get pinned.)

    Hold :meth:`Repo.write_lock` from the import until the roots are pinned, or a concurrent
    gc may delete the imported blocks in between.

    Returns:
        The header's roots (pinning them is the caller's decision).

    Raises:
        CARFormatError: the CAR is malformed.
        IntegrityError: a block does not match its CID.
        StoreError: the spool or the store cannot be written.
    """
    reader = read_car(stream, max_section=max_section)
    spool_dir = str(store.root) if isinstance(store, FSBlockStore | PackedBlockStore) else None
    staged: list[tuple[CID, int, int]] = []
    seen: set[CID] = set()
    try:
        spool = tempfile.TemporaryFile(prefix=".car-import-", dir=spool_dir)  # noqa: SIM115
    except OSError as exc:
        raise StoreError(f"cannot create a spool file for the CAR import: {exc}") from exc
    with spool:
        position = 0
        for block in reader:
            if block.cid in seen or store.has(block.cid):
                continue
            seen.add(block.cid)
            try:
                spool.write(block.data)
            except OSError as exc:
                raise StoreError(f"cannot spool the CAR import: {exc}") from exc
            staged.append((block.cid, position, len(block.data)))
            position += len(block.data)
        spool.flush()
        spool.seek(0)

        def replay() -> Iterator[Block]:
            for cid, offset, size in staged:
                data = os.pread(spool.fileno(), size, offset)
                if len(data) != size:
                    raise StoreError(f"the CAR import spool lost data for block {cid}")
                # Verified when read from the CAR; re-checked because the spool is on disk.
                yield Block.checked(cid, data, source="CAR import spool")

        store.put_many(replay())
    return list(reader.roots)


class CarFileSource:
    """The blocks of a CAR file on disk, indexed in one pass and read in place (a BlockSource).

    Opening reads the whole file once, verifying every block against its CID, and keeps only
    each block's offset and length; :meth:`get` reads the bytes back with ``pread`` and checks
    them again (the file is on disk, and disks fail). Nothing is copied anywhere, so a caller
    can decide which blocks to keep (:meth:`blocks`) before any of them reaches a store: a node
    checks a submitted Order in the CAR itself and stores only the blocks its DAG reaches.

    Args:
        file: The CAR (v1, or v2's data payload), opened for binary reading; it must stay open
            while the source is used.
        max_section: The largest section accepted.

    Raises:
        CARFormatError: the CAR is malformed.
        IntegrityError: a block does not match its CID.
    """

    def __init__(self, file: BinaryIO | IO[bytes], *, max_section: int = MAX_SECTION) -> None:
        self._fd = file.fileno()
        reader = read_car(file, max_section=max_section)
        self.roots: tuple[CID, ...] = reader.roots
        # Keyed by CIDv1: the same bytes named by a CIDv0 link are the same block.
        self._index: dict[CID, tuple[CID, int, int]] = {}
        for block, offset in reader.located():
            self._index.setdefault(block.cid.to_v1(), (block.cid, offset, len(block.data)))

    def __len__(self) -> int:
        return len(self._index)

    def has(self, cid: CID) -> bool:
        """True when the CAR holds the block."""
        return cid.to_v1() in self._index

    def get(self, cid: CID) -> bytes:
        """The block's bytes, read from the file and verified again.

        Raises:
            BlockNotFoundError: the CAR does not hold the block.
            IntegrityError: the file changed under the source.
        """
        entry = self._index.get(cid.to_v1())
        if entry is None:
            raise BlockNotFoundError(f"block {cid} is not in the CAR")
        _, offset, size = entry
        data = os.pread(self._fd, size, offset)
        cid.verify(data, source="CAR file")
        return data

    def blocks(self, cids: Iterable[CID]) -> Iterator[Block]:
        """The verified blocks named by ``cids`` that the CAR holds, each once, in the given order."""
        done: set[CID] = set()
        for cid in cids:
            key = cid.to_v1()
            entry = self._index.get(key)
            if entry is None or key in done:
                continue
            done.add(key)
            yield Block._trusted(entry[0], self.get(entry[0]))  # get() verified it
