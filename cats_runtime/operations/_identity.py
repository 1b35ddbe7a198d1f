"""A CAT Node's identity: an Ed25519 key, its did:key name, and BOM signatures.

The key lives in ``<home>/keys/node.key`` (PKCS#8 PEM, mode 0600, created on first use). Its
public half is named by a ``did:key`` (W3C did:key method): ``did:key:z`` + base58btc of the
multicodec ``ed25519-pub`` prefix (varint 0xed = bytes ``ed 01``) followed by the 32-byte key.
A did:key carries the public key itself, so anyone can check a signature from the DID alone.

A BOM is signed over the DAG-CBOR encoding of the BOM with ``signature`` set to null and
``issuer`` set to the signer's DID, so the issuer is covered by the signature too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..cas._multibase import b58decode, b58encode
from ..errors import InvalidCIDError, InvalidInputError, StoreError

if TYPE_CHECKING:
    from ..records import BOMRecord

__all__ = [
    "NodeIdentity",
    "bom_signing_payload",
    "did_from_public_key",
    "public_key_from_did",
    "sign_bom",
    "verify_bom_signature",
    "verify_signature",
]

DID_KEY_PREFIX: Final = "did:key:z"
_ED25519_PUB: Final = b"\xed\x01"  # multicodec 0xed as an unsigned varint
KEY_FILE: Final = Path("keys") / "node.key"


def did_from_public_key(public_key: bytes) -> str:
    """The did:key of a raw 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise InvalidInputError(f"expected a 32-byte Ed25519 public key, found {len(public_key)} bytes")
    return DID_KEY_PREFIX + b58encode(_ED25519_PUB + public_key)


def public_key_from_did(did: str) -> bytes:
    """The raw Ed25519 public key named by a did:key.

    Raises:
        InvalidInputError: ``did`` is not a base58btc did:key of an Ed25519 key.
    """
    if not did.startswith(DID_KEY_PREFIX):
        raise InvalidInputError(f"expected a did:key starting with {DID_KEY_PREFIX!r}, found {did[:40]!r}")
    try:
        raw = b58decode(did[len(DID_KEY_PREFIX) :])
    except InvalidCIDError as exc:
        raise InvalidInputError(f"expected base58btc after 'did:key:z' in {did[:60]!r}: {exc}") from None
    if raw[:2] != _ED25519_PUB:
        raise InvalidInputError(
            f"expected an ed25519-pub did:key (multicodec 0xed), found prefix {raw[:2].hex() or 'none'}"
        )
    if len(raw) != 34:
        raise InvalidInputError(f"expected a 32-byte Ed25519 key in the did:key, found {len(raw) - 2} bytes")
    return raw[2:]


def verify_signature(did: str, payload: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``payload`` by the key ``did`` names.

    A malformed DID or signature is simply not valid: this answers False rather than raising,
    because callers use it on data that came from the network.
    """
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key_from_did(did))
        key.verify(signature, payload)
    except (InvalidInputError, InvalidSignature, ValueError):
        return False
    return True


class NodeIdentity:
    """The Ed25519 key pair of one CAT Node.

    Attributes:
        did: The node's did:key.
        path: Where the private key is stored.
    """

    __slots__ = ("_key", "did", "path")

    def __init__(self, key: Ed25519PrivateKey, path: Path) -> None:
        self._key = key
        self.path = path
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.did = did_from_public_key(raw)

    def __repr__(self) -> str:
        return f"NodeIdentity({self.did!r})"  # never the key

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(self, payload: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``payload``."""
        return self._key.sign(payload)

    @classmethod
    def load_or_create(cls, home: Path) -> NodeIdentity:
        """Load ``<home>/keys/node.key``, creating it (mode 0600) on first use.

        Concurrent first calls agree on one key: the file is written under a temporary name
        and linked into place, which fails for every writer but the first.

        Raises:
            StoreError: The key file cannot be read, written, or is not an Ed25519 key, or it is
                readable by group or others (a leaked key cannot be un-leaked, so refuse loudly).
        """
        path = home / KEY_FILE
        if not path.exists():
            cls._create(path)
        try:
            mode = path.stat().st_mode
            if mode & 0o077:
                raise StoreError(
                    f"expected {path} to be readable by its owner only (mode 0600), found mode "
                    f"{mode & 0o777:04o}; fix it with `chmod 600 {path}`"
                )
            pem = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read the node key {path}: {exc.strerror or exc}") from exc
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"expected a PEM Ed25519 private key in {path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise StoreError(f"expected an Ed25519 key in {path}, found {type(key).__name__}")
        return cls(key, path)

    @staticmethod
    def _create(path: Path) -> None:
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(pem)
                    out.flush()
                    os.fsync(out.fileno())
                # Linking fails when another process created the key first: then use theirs.
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the node key {path}: {exc.strerror or exc}") from exc


def bom_signing_payload(bom: BOMRecord) -> bytes:
    """The bytes a BOM signature covers: the BOM's DAG-CBOR with ``signature`` set to null."""
    return dataclasses.replace(bom, signature=None).encode()


def sign_bom(bom: BOMRecord, identity: NodeIdentity) -> BOMRecord:
    """A copy of ``bom`` with ``issuer`` set to the node's DID and signed by its key."""
    unsigned = dataclasses.replace(bom, issuer=identity.did, signature=None)
    return dataclasses.replace(unsigned, signature=identity.sign(unsigned.encode()))


def verify_bom_signature(bom: BOMRecord) -> bool | None:
    """Check a BOM's signature against its issuer's did:key.

    Returns:
        None when the BOM is unsigned (no issuer and no signature); True when the signature is
        valid for the issuer; False when it is invalid, or only one of issuer / signature is set.
    """
    if bom.issuer is None and bom.signature is None:
        return None
    if bom.issuer is None or bom.signature is None:
        return False
    return verify_signature(bom.issuer, bom_signing_payload(bom), bom.signature)
