"""Content identifiers (CIDv0 and CIDv1), multihashes and verified blocks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final

from ..errors import IntegrityError, InvalidCIDError, UnsupportedHashError
from ._multibase import b58decode, b58encode, multibase_decode, multibase_encode
from ._varint import decode_varint, encode_varint

__all__ = [
    "CODEC_NAMES",
    "DAG_CBOR",
    "DAG_JSON",
    "DAG_PB",
    "HASH_NAMES",
    "IDENTITY",
    "RAW",
    "SHA2_256",
    "Block",
    "CID",
    "compute_digest",
    "malformed_cid",
]

# Multicodec codes (multiformats/multicodec table).
RAW: Final = 0x55
DAG_PB: Final = 0x70
DAG_CBOR: Final = 0x71
DAG_JSON: Final = 0x0129
CODEC_NAMES: Final[dict[int, str]] = {
    RAW: "raw",
    DAG_PB: "dag-pb",
    DAG_CBOR: "dag-cbor",
    DAG_JSON: "dag-json",
}

IDENTITY: Final = 0x00
SHA2_256: Final = 0x12
SHA2_512: Final = 0x13
SHA3_256: Final = 0x16
BLAKE2B_256: Final = 0xB220

# Hash functions CATs can verify: code -> (name, digest size, hasher).
_Hasher = Callable[[bytes | memoryview], bytes]
_HASHES: Final[dict[int, tuple[str, int | None, _Hasher]]] = {
    IDENTITY: ("identity", None, lambda b: bytes(b)),
    SHA2_256: ("sha2-256", 32, lambda b: hashlib.sha256(b).digest()),
    SHA2_512: ("sha2-512", 64, lambda b: hashlib.sha512(b).digest()),
    SHA3_256: ("sha3-256", 32, lambda b: hashlib.sha3_256(b).digest()),
    BLAKE2B_256: ("blake2b-256", 32, lambda b: hashlib.blake2b(b, digest_size=32).digest()),
}
HASH_NAMES: Final[dict[int, str]] = {code: v[0] for code, v in _HASHES.items()}
_MAX_IDENTITY = 128  # Kubo refuses inline (identity) CIDs with larger digests.
_SHA256_V0_PREFIX: Final = b"\x12\x20"
# Binary prefixes of the sha2-256 CIDs (nearly all CIDs met) -> (version, codec); see CID.from_bytes.
_OWN_PREFIXES: Final = {
    _SHA256_V0_PREFIX: (0, 0x70),
    b"\x01\x55\x12\x20": (1, 0x55),
    b"\x01\x70\x12\x20": (1, 0x70),
    b"\x01\x71\x12\x20": (1, 0x71),
}

_BASE32_ALPHABET: Final = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_BASE32_AS_DIGITS: Final = str.maketrans(
    "abcdefghijklmnopqrstuvwxyz234567", "0123456789abcdefghijklmnopqrstuv"
)


def compute_digest(hash_code: int, data: bytes | memoryview) -> bytes:
    """Hash ``data`` with the multihash function ``hash_code``."""
    try:
        return _HASHES[hash_code][2](data)
    except KeyError:
        raise UnsupportedHashError(
            f"expected a hash function in {sorted(HASH_NAMES.values())}, found 0x{hash_code:x}"
        ) from None


def _check_multihash(mh: bytes) -> tuple[int, bytes]:
    code, off = decode_varint(mh)
    size, off = decode_varint(mh, off)
    digest = mh[off:]
    if len(digest) != size:
        raise InvalidCIDError(f"expected a {size}-byte digest in the multihash, found {len(digest)} bytes")
    if code not in _HASHES:
        # A CID may name any hash function; CATs parses it (so foreign DAGs can be walked and
        # shown) but refuses to verify, store or serve its block (compute_digest raises).
        return code, digest
    expected = _HASHES[code][1]
    if expected is None:
        if size > _MAX_IDENTITY:
            raise InvalidCIDError(
                f"expected an identity digest of at most {_MAX_IDENTITY} bytes, found {size}"
            )
    elif size != expected:
        raise InvalidCIDError(f"expected a {expected}-byte {HASH_NAMES[code]} digest, found {size} bytes")
    return code, digest


_MAX_SHOWN = 80  # characters of a refused CID string quoted back; a pasted file must not flood the line


def malformed_cid(text: str, reason: str) -> InvalidCIDError:
    """The one error for a CID string that does not parse: ``expected a CID, found '...' (reason)``.

    Every parser of CID text (CLI arguments, HTTP paths, DAG-JSON links, allow-lists) reaches it
    through :meth:`CID.decode`, so a malformed CID reads the same wherever it was typed.
    """
    shown = text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."
    return InvalidCIDError(f"expected a CID, found {shown!r} ({reason})")


class CID:
    """An immutable, validated IPFS content identifier.

    ``str(cid)`` gives the canonical text: base58btc for CIDv0 (``Qm...``), base32 for
    CIDv1 (``bafy...``), exactly as Kubo prints them. Equality and hashing use the binary form.
    """

    __slots__ = ("_bytes", "_codec", "_digest", "_hash_code", "_text", "_version")

    _version: int
    _codec: int
    _hash_code: int
    _digest: bytes
    _bytes: bytes
    _text: str

    def __init__(self, version: int, codec: int, hash_code: int, digest: bytes) -> None:
        if version not in (0, 1):
            raise InvalidCIDError(f"expected CID version 0 or 1, found {version!r}")
        if version == 0 and (codec != DAG_PB or hash_code != SHA2_256):
            raise InvalidCIDError("expected CIDv0 to be dag-pb with sha2-256")
        mh = encode_varint(hash_code) + encode_varint(len(digest)) + digest
        _check_multihash(mh)
        object.__setattr__(self, "_version", version)
        object.__setattr__(self, "_codec", codec)
        object.__setattr__(self, "_hash_code", hash_code)
        object.__setattr__(self, "_digest", bytes(digest))
        raw = mh if version == 0 else encode_varint(1) + encode_varint(codec) + mh
        object.__setattr__(self, "_bytes", raw)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CID is immutable")

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def decode(cls, value: str | bytes | CID) -> CID:
        """Parse a CID from its text (any supported multibase, or CIDv0 base58) or binary form."""
        if isinstance(value, CID):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls.from_bytes(bytes(value))
        if not isinstance(value, str):
            raise InvalidCIDError(f"expected a CID string or bytes, found {type(value).__name__}")
        text = value.strip()
        if not text:
            raise malformed_cid(value, "an empty string")
        if len(text) == 59 and text[0] == "b":
            cid = cls._from_canonical_base32(text)
            if cid is not None:
                return cid
        try:
            if len(text) == 46 and text.startswith("Qm"):
                return cls.from_bytes(b58decode(text))
            return cls.from_bytes(multibase_decode(text))
        except InvalidCIDError as exc:
            # Whichever layer refused it (multibase, varint, digest length), the user sees one form.
            raise malformed_cid(value, str(exc)) from None

    @classmethod
    def _from_canonical_base32(cls, text: str) -> CID | None:
        """The sha2-256 CIDv1 whose canonical text is ``text`` (59 characters), or None.

        What every catalog row and every printed CIDv1 holds: decoded as one base-32 integer (in
        C), not quantum by quantum as ``base64.b32decode`` does in Python, and the text is kept
        since it is exactly what :meth:`encode` would give. Anything else (other case, non-zero
        padding bits, another prefix) returns None and takes the general parser.
        """
        body = text[1:]
        if not _BASE32_ALPHABET.issuperset(body):
            return None
        # 58 digits of 5 bits: 288 bits of CID and 2 padding bits, zero in the canonical form.
        value = int(body.translate(_BASE32_AS_DIGITS), 32)
        if value & 3:
            return None
        raw = (value >> 2).to_bytes(36, "big")
        spec = _OWN_PREFIXES.get(raw[:4])
        if spec is None:
            return None
        cid = cls._trusted(spec, raw)
        object.__setattr__(cid, "_text", text)
        return cid

    @classmethod
    def from_bytes(cls, raw: bytes) -> CID:
        """Parse the binary form of a CID; the whole byte string must be consumed."""
        n = len(raw)
        if n == 36 or n == 34:
            # The sha2-256 forms of nearly every CID met (prefix and exact length) pass every
            # check of the general parser by construction; skipping it halves record decoding.
            raw = raw if type(raw) is bytes else bytes(raw)  # a bytearray slice is unhashable
            spec = _OWN_PREFIXES.get(raw[:4] if n == 36 else raw[:2])
            if spec is not None:
                return cls._trusted(spec, raw)
        cid, end = cls.read(raw, 0)
        if end != len(raw):
            raise InvalidCIDError(f"expected a CID of {end} bytes, found {len(raw) - end} trailing bytes")
        return cid

    @classmethod
    def _trusted(cls, spec: tuple[int, int], raw: bytes) -> CID:
        # ``raw`` is a known sha2-256 prefix (``spec`` = its version and codec) and a 32-byte digest.
        cid = object.__new__(cls)
        object.__setattr__(cid, "_version", spec[0])
        object.__setattr__(cid, "_codec", spec[1])
        object.__setattr__(cid, "_hash_code", SHA2_256)
        object.__setattr__(cid, "_digest", raw[-32:])
        object.__setattr__(cid, "_bytes", raw)
        return cid

    @classmethod
    def read(cls, data: bytes | memoryview, offset: int = 0) -> tuple[CID, int]:
        """Read one binary CID at ``offset`` of a larger buffer; returns ``(cid, end)``."""
        try:
            if len(data) - offset >= 2 and bytes(data[offset : offset + 2]) == _SHA256_V0_PREFIX:
                end = offset + 34
                if end > len(data):
                    raise InvalidCIDError("expected a 34-byte CIDv0, found truncated bytes")
                return cls(0, DAG_PB, SHA2_256, bytes(data[offset + 2 : end])), end
            version, off = decode_varint(data, offset)
            if version != 1:
                raise InvalidCIDError(f"expected CID version 1, found version {version}")
            codec, off = decode_varint(data, off)
            hash_code, off = decode_varint(data, off)
            size, off = decode_varint(data, off)
        except InvalidCIDError:
            raise
        except Exception as exc:  # DecodeError from a varint, wrapped with context
            raise InvalidCIDError(f"expected a binary CID: {exc}") from None
        end = off + size
        if end > len(data):
            raise InvalidCIDError(f"expected a {size}-byte digest, found {len(data) - off} bytes")
        return cls(1, codec, hash_code, bytes(data[off:end])), end

    @classmethod
    def compute(
        cls, data: bytes | memoryview, codec: int = RAW, *, version: int = 1, hash_code: int = SHA2_256
    ) -> CID:
        """The CID of ``data`` under ``codec`` (sha2-256 by default)."""
        return cls(version, codec, hash_code, compute_digest(hash_code, data))

    # -- properties ---------------------------------------------------------------------
    @property
    def version(self) -> int:
        """0 or 1."""
        return self._version

    @property
    def codec(self) -> int:
        """Multicodec code of the content (``RAW``, ``DAG_PB``, ``DAG_CBOR``...)."""
        return self._codec

    @property
    def codec_name(self) -> str:
        """Name of the codec, or its hex code when CATs does not know it."""
        return CODEC_NAMES.get(self._codec, f"0x{self._codec:x}")

    @property
    def hash_code(self) -> int:
        """Multihash function code."""
        return self._hash_code

    @property
    def hash_name(self) -> str:
        """Name of the hash function, or its hex code when CATs does not know it."""
        return HASH_NAMES.get(self._hash_code, f"0x{self._hash_code:x}")

    @property
    def digest(self) -> bytes:
        """The raw hash digest."""
        return self._digest

    @property
    def multihash(self) -> bytes:
        """The multihash (function code, length, digest)."""
        return encode_varint(self._hash_code) + encode_varint(len(self._digest)) + self._digest

    # -- conversions --------------------------------------------------------------------
    def __bytes__(self) -> bytes:
        return self._bytes

    @property
    def buffer(self) -> bytes:
        """The binary form (as used in CAR files, dag-pb links and DAG-CBOR tag 42)."""
        return self._bytes

    def encode(self, base: str | None = None) -> str:
        """Text form; ``base`` defaults to base58btc for v0 and base32 for v1."""
        if self._version == 0:
            if base not in (None, "base58btc"):
                raise InvalidCIDError(f"expected base58btc for a CIDv0, found {base!r}")
            return b58encode(self._bytes)
        return multibase_encode(self._bytes, base or "base32")

    def to_v1(self) -> CID:
        """The same content as a CIDv1."""
        return self if self._version == 1 else CID(1, self._codec, self._hash_code, self._digest)

    def __str__(self) -> str:
        # The canonical text, computed once: base32 in pure Python is slow, and a lineage page
        # or listing prints the same CID several times.
        try:
            return self._text
        except AttributeError:
            text = self.encode()
            object.__setattr__(self, "_text", text)
            return text

    def __repr__(self) -> str:
        return f"CID({self.encode()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CID) and self._bytes == other._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __lt__(self, other: CID) -> bool:
        return self._bytes < other._bytes

    def __reduce__(self) -> tuple[type[CID], tuple[int, int, int, bytes]]:
        # Lets Ray's serializer ship CIDs by value; the constructor re-validates them.
        return (CID, (self._version, self._codec, self._hash_code, self._digest))

    # -- verification -------------------------------------------------------------------
    def matches(self, data: bytes | memoryview) -> bool:
        """True when ``data`` hashes to this CID's digest.

        Raises:
            UnsupportedHashError: the CID names a hash function CATs cannot compute.
        """
        return compute_digest(self._hash_code, data) == self._digest

    def verify(self, data: bytes | memoryview, *, source: str = "") -> None:
        """Raise IntegrityError unless ``data`` hashes to this CID."""
        if not self.matches(data):
            where = f" from {source}" if source else ""
            raise IntegrityError(
                f"block {self}{where} is corrupt: expected its {self.hash_name} digest "
                f"{self._digest.hex()}, found {compute_digest(self._hash_code, data).hex()}"
            )


class Block:
    """Bytes together with a CID they are known to match.

    The only ways to build one are :meth:`encode` (hashes the bytes) and :meth:`checked`
    (verifies them), so a ``Block`` in hand is always trustworthy and stores need not rehash.
    """

    __slots__ = ("cid", "data")

    cid: CID
    data: bytes

    def __init__(self, cid: CID, data: bytes, _token: object = None) -> None:
        if _token is not _PRIVATE:
            raise TypeError("use Block.encode() or Block.checked()")
        self.cid = cid
        self.data = data

    @classmethod
    def encode(cls, data: bytes, codec: int = RAW, *, version: int = 1) -> Block:
        """Hash ``data`` (sha2-256) and wrap it as a block of ``codec``."""
        return cls(CID.compute(data, codec, version=version), bytes(data), _PRIVATE)

    @classmethod
    def checked(cls, cid: CID, data: bytes, *, source: str = "") -> Block:
        """Verify ``data`` against ``cid``; raises IntegrityError on a mismatch."""
        cid.verify(data, source=source)
        return cls(cid, bytes(data), _PRIVATE)

    @classmethod
    def _trusted(cls, cid: CID, data: bytes) -> Block:
        # For code that has just computed ``cid`` from ``data`` itself (the importer's hot path).
        return cls(cid, data, _PRIVATE)

    def __repr__(self) -> str:
        return f"Block({self.cid}, {len(self.data)} bytes)"


_PRIVATE = object()
