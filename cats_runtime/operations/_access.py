"""Who may submit Orders to a CAT Node, and which code it agrees to run.

**Tokens.** Each organization allowed to submit Orders gets a bearer token. The node keeps only
the SHA-256 of each token (``<home>/node/tokens.json``, mode 0600): tokens are 256 random bits,
so a fast hash is enough (a slow KDF only helps low-entropy passwords) and a stolen file does
not reveal them. Checking compares the presented token's hash with every entry in constant
time and does not stop at the first match, so timing reveals neither which entry matched nor
how much of a hash did.

**Allow-list.** A text file (default ``<home>/node/allow.txt``), one entry per line, ``#``
comments: a CID allows Function code with exactly that UnixFS CID; a ``did:key:z...`` trusts
that key to endorse code. An endorsement is an Ed25519 signature by a trusted key over
``b"cats-code-endorsement@1:" + bytes(code_cid)``; ``cats node endorse CID`` makes one with the
node's own key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..cas import CID
from ..errors import AuthError, CredentialsError, InvalidInputError, StoreError
from ._identity import NodeIdentity, public_key_from_did, verify_signature

__all__ = [
    "AllowList",
    "Endorsement",
    "TokenStore",
    "endorse_code",
    "endorsement_payload",
]

TOKENS_FILE: Final = Path("node") / "tokens.json"
ALLOW_FILE: Final = Path("node") / "allow.txt"
_ORG_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN_PREFIX: Final = "cats_"  # noqa: S105  (a recognizable prefix, not a secret)
_ENDORSEMENT_DOMAIN: Final = b"cats-code-endorsement@1:"


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenStore:
    """The hashed bearer tokens of the organizations allowed to submit Orders.

    The file is re-read when it changes, so ``cats node token add`` takes effect on a running
    node without a restart.

    Args:
        path: The tokens file (``<home>/node/tokens.json`` by default, see :meth:`for_home`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: list[tuple[str, bytes]] = []

    @classmethod
    def for_home(cls, home: Path) -> TokenStore:
        """The token store of the node at ``home``."""
        return cls(home / TOKENS_FILE)

    def _load(self) -> list[tuple[str, bytes]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"cannot read the tokens file {self.path}: {exc.strerror or exc}") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp == self._stamp:
                return self._entries
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            entries = [(str(e["org"]), bytes.fromhex(e["sha256"])) for e in doc["tokens"]]
        except OSError as exc:
            raise StoreError(f"cannot read the tokens file {self.path}: {exc.strerror or exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"expected {self.path} to hold {{'tokens': [{{'org', 'sha256'}}...]}}, "
                f"found invalid content: {exc}"
            ) from exc
        with self._lock:
            self._stamp, self._entries = stamp, entries
        return entries

    def orgs(self) -> list[str]:
        """Organizations that hold at least one token."""
        return sorted({org for org, _ in self._load()})

    def issue(self, org: str) -> str:
        """Create a new token for ``org`` and return it; only its hash is stored.

        Raises:
            InvalidInputError: ``org`` is not 1-64 letters, digits, ``.``, ``_`` or ``-``.
        """
        if not _ORG_RE.match(org):
            raise InvalidInputError(
                f"expected an organization name of 1-64 letters, digits, '.', '_' or '-', found {org!r}"
            )
        token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        entries = [*self._load(), (org, _digest(token))]
        self._save(entries)
        return token

    def register(self, org: str, token: str) -> None:
        """Accept a token issued elsewhere (e.g. a deployment's secret); only its hash is stored.

        Idempotent, so a node can register the same secret at every start.

        Raises:
            InvalidInputError: a bad organization name, or a token shorter than 24 characters.
        """
        if not _ORG_RE.match(org):
            raise InvalidInputError(
                f"expected an organization name of 1-64 letters, digits, '.', '_' or '-', found {org!r}"
            )
        if len(token) < 24:
            raise InvalidInputError(f"expected a bearer token of at least 24 characters, found {len(token)}")
        entries = self._load()
        if (org, _digest(token)) not in entries:
            self._save([*entries, (org, _digest(token))])

    def revoke(self, org: str) -> int:
        """Remove every token of ``org``; returns how many were removed."""
        entries = self._load()
        kept = [(o, d) for o, d in entries if o != org]
        self._save(kept)
        return len(entries) - len(kept)

    def _save(self, entries: Iterable[tuple[str, bytes]]) -> None:
        doc = {"tokens": [{"org": org, "sha256": digest.hex()} for org, digest in entries]}
        try:
            _write_private(self.path, json.dumps(doc, indent=1) + "\n")
        except OSError as exc:
            raise StoreError(f"cannot write the tokens file {self.path}: {exc.strerror or exc}") from exc

    def authenticate(self, token: str) -> str:
        """The organization a bearer token belongs to.

        Raises:
            AuthError: The token matches no entry (the message never echoes the token).
        """
        presented = _digest(token)
        found: str | None = None
        for org, digest in self._load():
            # Compare against every entry; no early exit, so timing does not tell which matched.
            if hmac.compare_digest(presented, digest) and found is None:
                found = org
        if found is None:
            raise CredentialsError("expected a valid bearer token for this node, found an unknown token")
        return found


def endorsement_payload(code: CID) -> bytes:
    """The bytes an endorsement of Function code ``code`` signs."""
    return _ENDORSEMENT_DOMAIN + bytes(code)


@dataclass(frozen=True)
class Endorsement:
    """A signature by ``signer`` (a did:key) saying "I vouch for the code with this CID".

    Its text form, used in HTTP headers and JSON bodies, is ``<did>.<base64url signature>``.
    """

    signer: str
    signature: bytes

    def __str__(self) -> str:
        return f"{self.signer}.{base64.urlsafe_b64encode(self.signature).decode('ascii').rstrip('=')}"

    @classmethod
    def parse(cls, text: str) -> Endorsement:
        """Parse ``<did>.<base64url signature>``.

        Raises:
            InvalidInputError: The text does not have that shape.
        """
        did, sep, sig = text.strip().rpartition(".")
        if not sep:
            raise InvalidInputError(f"expected an endorsement '<did:key>.<base64url>', found {text[:80]!r}")
        public_key_from_did(did)
        try:
            signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidInputError(f"expected base64url after the DID in the endorsement: {exc}") from None
        return cls(did, signature)

    def valid_for(self, code: CID) -> bool:
        """True when the signature is valid for ``code`` (trust in the signer is checked elsewhere)."""
        return verify_signature(self.signer, endorsement_payload(code), self.signature)


def endorse_code(identity: NodeIdentity, code: CID) -> Endorsement:
    """Endorse Function code with this node's key."""
    return Endorsement(identity.did, identity.sign(endorsement_payload(code)))


class AllowList:
    """The code a node agrees to run: code CIDs, and did:keys trusted to endorse code.

    The file is re-read when it changes. A missing file allows nothing.

    Args:
        path: The allow-list file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._cids: frozenset[CID] = frozenset()
        self._signers: frozenset[str] = frozenset()

    @classmethod
    def for_home(cls, home: Path) -> AllowList:
        """The default allow-list of the node at ``home``."""
        return cls(home / ALLOW_FILE)

    def _load(self) -> tuple[frozenset[CID], frozenset[str]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return frozenset(), frozenset()
        except OSError as exc:
            raise StoreError(f"cannot read the allow-list {self.path}: {exc.strerror or exc}") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp == self._stamp:
                return self._cids, self._signers
        cids: set[CID] = set()
        signers: set[str] = set()
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StoreError(f"cannot read the allow-list {self.path}: {exc.strerror or exc}") from exc
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                if line.startswith("did:"):
                    public_key_from_did(line)
                    signers.add(line)
                else:
                    cids.add(CID.decode(line).to_v1())
            except InvalidInputError as exc:
                raise InvalidInputError(f"{self.path}:{lineno}: {exc}") from None
        with self._lock:
            self._stamp = stamp
            self._cids, self._signers = frozenset(cids), frozenset(signers)
        return self._cids, self._signers

    @property
    def cids(self) -> frozenset[CID]:
        """Code CIDs allowed directly (as CIDv1)."""
        return self._load()[0]

    @property
    def signers(self) -> frozenset[str]:
        """did:keys trusted to endorse code."""
        return self._load()[1]

    def add(self, entry: str) -> None:
        """Append a CID or a did:key (validated first) to the file."""
        entry = entry.strip()
        if entry.startswith("did:"):
            public_key_from_did(entry)
        else:
            CID.decode(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(entry + "\n")
        except OSError as exc:
            raise StoreError(f"cannot write the allow-list {self.path}: {exc.strerror or exc}") from exc
        # mtime granularity can hide two writes within one tick: forget the cache outright.
        with self._lock:
            self._stamp = None

    def check(self, code: CID, endorsements: Iterable[Endorsement] = ()) -> str:
        """Say why ``code`` may run, or refuse it.

        Returns:
            ``"allow-list"`` or ``"endorsed by <did>"``.

        Raises:
            AuthError: The code is neither listed nor validly endorsed by a trusted key.
        """
        cids, signers = self._load()
        if code.to_v1() in cids:
            return "allow-list"
        for endorsement in endorsements:
            if endorsement.signer in signers and endorsement.valid_for(code):
                return f"endorsed by {endorsement.signer}"
        raise AuthError(
            f"expected Function code on this node's allow-list or endorsed by a trusted key, "
            f"found code {code} that is neither"
        )
