"""Who may submit Orders to a CAT Node, and which code it agrees to run.

**Tokens.** Each organization allowed to submit Orders gets a bearer token. The node keeps only
the SHA-256 of each token (``<home>/node/tokens.json``, mode 0600): tokens are 256 random bits,
so a fast hash is enough (a slow KDF only helps low-entropy passwords) and a stolen file does
not reveal them. Checking compares the presented token's hash with every entry in constant
time and does not stop at the first match, so timing reveals neither which entry matched nor
how much of a hash did.

**Gateways.** Beside its tokens, an organization may have gateways registered (``cats node
token add ORG --gateway URL``): the only places the node fetches from when that organization
submits an Order by CID with ``"from"``. A registration names an origin (scheme, host, port,
path prefix; never credentials) and whether it may use addresses outside the public internet
(``--allow-private``; an IP literal such as ``http://127.0.0.1:8700`` is explicit by itself).

**Allow-list.** A text file (default ``<home>/node/allow.txt``), one entry per line, ``#``
comments. An entry names what a node agrees to run:

- ``<Function CID>`` (a ``cats/function`` record, dag-cbor): exactly that Function, i.e. that code
  with that entrypoint, mode, requirements, image and every other field of the record. This is
  the normal entry (``cats node allow --function DIR:module:fn``).
- ``code:<code CID>``: any entrypoint (and any other record field) over that UnixFS code
  directory. Explicit, because allowing code is wider than allowing a Function: an Order naming
  another callable in allowed code (``main:other``) is then accepted too
  (``cats node allow --code-any-entrypoint CID``).
- ``did:key:z...``: trust that key's endorsements.

A bare code CID (dag-pb) is refused with a message naming both spellings, so an allow-list written
for the old, code-only meaning cannot silently keep allowing every entrypoint.

An endorsement is an Ed25519 signature by a trusted key over
``b"cats-function-endorsement@1:" + bytes(function_cid)`` (``cats node endorse FUNCTION_CID``), or,
as the explicit wider option, over ``b"cats-code-endorsement@1:" + bytes(code_cid)``
(``cats node endorse --code-any-entrypoint CODE_CID``).
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..cas import CID, Destination
from ..errors import AuthError, CredentialsError, InvalidInputError, StoreError
from ._identity import NodeIdentity, public_key_from_did, verify_signature

__all__ = [
    "AllowList",
    "Endorsement",
    "TokenStore",
    "code_endorsement_payload",
    "endorse_code",
    "endorse_function",
    "endorsement_payload",
]

TOKENS_FILE: Final = Path("node") / "tokens.json"
ALLOW_FILE: Final = Path("node") / "allow.txt"
_ORG_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN_PREFIX: Final = "cats_"  # noqa: S105  (a recognizable prefix, not a secret)
_ENDORSEMENT_DOMAIN: Final = b"cats-function-endorsement@1:"
_CODE_ENDORSEMENT_DOMAIN: Final = b"cats-code-endorsement@1:"
_CODE_PREFIX: Final = "code:"
_DAG_CBOR: Final = 0x71


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
        self._gateways: list[tuple[str, Destination]] = []

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
            gateways = [
                (str(g["org"]), Destination.parse(str(g["url"]), allow_private=bool(g.get("private"))))
                for g in doc.get("gateways", [])
            ]
        except OSError as exc:
            raise StoreError(f"cannot read the tokens file {self.path}: {exc.strerror or exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"expected {self.path} to hold {{'tokens': [{{'org', 'sha256'}}...]}}, "
                f"found invalid content: {exc}"
            ) from exc
        with self._lock:
            self._stamp, self._entries, self._gateways = stamp, entries, gateways
        return entries

    def gateways(self, org: str | None = None) -> list[tuple[str, Destination]]:
        """``(org, gateway)`` registrations, of ``org`` only when given."""
        self._load()
        with self._lock:
            return [(o, g) for o, g in self._gateways if org is None or o == org]

    def add_gateway(self, org: str, url: str, *, allow_private: bool = False) -> Destination:
        """Register a gateway the node may fetch from for ``org`` (replacing one of the same origin).

        Raises:
            InvalidInputError: A bad organization name, or a URL that is not a plain http(s)
                origin (credentials, a query or a fragment are refused: nothing secret is stored).
        """
        _check_org(org)
        gateway = _registration(url, allow_private)
        entries = self._load()
        kept = [(o, g) for o, g in self.gateways() if not (o == org and g.same_origin(gateway))]
        self._save(entries, [*kept, (org, gateway)])
        return gateway

    def remove_gateway(self, org: str, url: str) -> int:
        """Forget ``org``'s registration of the gateway ``url``; returns how many were removed."""
        gateway = Destination.parse(url)
        entries = self._load()
        current = self.gateways()
        kept = [(o, g) for o, g in current if not (o == org and g.same_origin(gateway))]
        self._save(entries, kept)
        return len(current) - len(kept)

    def gateway_for(self, org: str, url: str) -> Destination | None:
        """``org``'s registration of the origin ``url`` names, if there is one."""
        wanted = Destination.parse(url)
        return next((g for _, g in self.gateways(org) if g.same_origin(wanted)), None)

    def orgs(self) -> list[str]:
        """Organizations that hold at least one token."""
        return sorted({org for org, _ in self._load()})

    def issue(self, org: str, *, gateways: Sequence[str] = (), allow_private: bool = False) -> str:
        """Create a new token for ``org`` and return it; only its hash is stored.

        Args:
            org: The organization.
            gateways: Gateways to register for it as :meth:`add_gateway` does (all checked
                before anything is written).
            allow_private: Whether those gateways' host names may resolve to non-public addresses.

        Raises:
            InvalidInputError: ``org`` is not 1-64 letters, digits, ``.``, ``_`` or ``-``, or a
                gateway URL is not a plain http(s) origin.
        """
        _check_org(org)
        registered = [(org, _registration(url, allow_private)) for url in gateways]
        token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        entries = [*self._load(), (org, _digest(token))]
        kept = [
            (o, g)
            for o, g in self.gateways()
            if not any(o == org and g.same_origin(r) for _, r in registered)
        ]
        self._save(entries, [*kept, *registered])
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
        """Remove every token of ``org`` (and its gateways); returns how many tokens were removed."""
        entries = self._load()
        kept = [(o, d) for o, d in entries if o != org]
        self._save(kept, [(o, g) for o, g in self.gateways() if o != org])
        return len(entries) - len(kept)

    def _save(
        self, entries: Iterable[tuple[str, bytes]], gateways: Iterable[tuple[str, Destination]] | None = None
    ) -> None:
        doc: dict[str, Any] = {"tokens": [{"org": org, "sha256": digest.hex()} for org, digest in entries]}
        kept = self.gateways() if gateways is None else list(gateways)
        if kept:
            doc["gateways"] = [{"org": o, "url": g.url, "private": g.allow_private} for o, g in kept]
        try:
            _write_private(self.path, json.dumps(doc, indent=1) + "\n")
        except OSError as exc:
            raise StoreError(f"cannot write the tokens file {self.path}: {exc.strerror or exc}") from exc
        # mtime granularity can hide two writes within one tick: forget the cache outright.
        with self._lock:
            self._stamp = None

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


def _registration(url: str, allow_private: bool) -> Destination:
    return Destination.parse(url, allow_private=allow_private, plain=True)


def _check_org(org: str) -> None:
    if not _ORG_RE.match(org):
        raise InvalidInputError(
            f"expected an organization name of 1-64 letters, digits, '.', '_' or '-', found {org!r}"
        )


def endorsement_payload(function: CID) -> bytes:
    """The bytes an endorsement of the Function record ``function`` signs."""
    return _ENDORSEMENT_DOMAIN + bytes(function.to_v1())


def code_endorsement_payload(code: CID) -> bytes:
    """The bytes an endorsement of code ``code`` for any entrypoint signs (the wider option)."""
    return _CODE_ENDORSEMENT_DOMAIN + bytes(code)


@dataclass(frozen=True)
class Endorsement:
    """A signature by ``signer`` (a did:key) saying "I vouch for this Function" (or this code).

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

    def valid_for(self, function: CID) -> bool:
        """True when this signs the Function ``function`` (trust in the signer is checked elsewhere)."""
        return verify_signature(self.signer, endorsement_payload(function), self.signature)

    def valid_for_code(self, code: CID) -> bool:
        """True when this signs ``code`` for any entrypoint (the explicit, wider endorsement)."""
        return verify_signature(self.signer, code_endorsement_payload(code), self.signature)


def endorse_function(identity: NodeIdentity, function: CID) -> Endorsement:
    """Endorse one Function (its record's CID) with this node's key."""
    return Endorsement(identity.did, identity.sign(endorsement_payload(function)))


def endorse_code(identity: NodeIdentity, code: CID) -> Endorsement:
    """Endorse code for any entrypoint with this node's key (wider than :func:`endorse_function`)."""
    return Endorsement(identity.did, identity.sign(code_endorsement_payload(code)))


def _parse_entry(line: str) -> tuple[str, CID | str]:
    """``(kind, value)`` of one allow-list entry: ``function``, ``code`` or ``signer``."""
    if line.startswith("did:"):
        public_key_from_did(line)
        return "signer", line
    if line.startswith(_CODE_PREFIX):
        code = CID.decode(line[len(_CODE_PREFIX) :].strip()).to_v1()
        if code.codec == _DAG_CBOR:
            raise InvalidInputError(
                f"expected a code directory CID (dag-pb) after {_CODE_PREFIX!r}, found a record CID {code}"
            )
        return "code", code
    cid = CID.decode(line).to_v1()
    if cid.codec != _DAG_CBOR:
        raise InvalidInputError(
            f"expected a Function CID (a cats/function record, dag-cbor), found {cid} (not a record): "
            f"allow a Function with `cats node allow --function DIR:module:fn`, or any entrypoint of "
            f"that code explicitly with '{_CODE_PREFIX}{cid}' (`cats node allow --code-any-entrypoint`)"
        )
    return "function", cid


class AllowList:
    """What a node agrees to run: Function CIDs, code for any entrypoint, and trusted did:keys.

    The file is re-read when it changes. A missing file allows nothing.

    Args:
        path: The allow-list file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._rules: _Rules = _Rules(frozenset(), frozenset(), frozenset())

    @classmethod
    def for_home(cls, home: Path) -> AllowList:
        """The default allow-list of the node at ``home``."""
        return cls(home / ALLOW_FILE)

    def _load(self) -> _Rules:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return _Rules(frozenset(), frozenset(), frozenset())
        except OSError as exc:
            raise StoreError(f"cannot read the allow-list {self.path}: {exc.strerror or exc}") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp == self._stamp:
                return self._rules
        found: dict[str, set[Any]] = {"function": set(), "code": set(), "signer": set()}
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StoreError(f"cannot read the allow-list {self.path}: {exc.strerror or exc}") from exc
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                kind, value = _parse_entry(line)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{self.path}:{lineno}: {exc}") from None
            found[kind].add(value)
        rules = _Rules(frozenset(found["function"]), frozenset(found["code"]), frozenset(found["signer"]))
        with self._lock:
            self._stamp, self._rules = stamp, rules
        return rules

    @property
    def functions(self) -> frozenset[CID]:
        """Function CIDs allowed (as CIDv1)."""
        return self._load().functions

    @property
    def codes(self) -> frozenset[CID]:
        """Code CIDs allowed for any entrypoint (the explicit ``code:`` entries)."""
        return self._load().codes

    @property
    def signers(self) -> frozenset[str]:
        """did:keys trusted to endorse Functions (or code)."""
        return self._load().signers

    def entries(self) -> list[str]:
        """Every entry in its file spelling, sorted: Functions, ``code:`` entries, then did:keys."""
        rules = self._load()
        return [
            *sorted(str(c) for c in rules.functions),
            *sorted(f"{_CODE_PREFIX}{c}" for c in rules.codes),
            *sorted(rules.signers),
        ]

    def add(self, entry: str) -> None:
        """Append a Function CID, a ``code:<CID>`` or a did:key (validated first) to the file."""
        entry = entry.strip()
        _parse_entry(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(entry + "\n")
        except OSError as exc:
            raise StoreError(f"cannot write the allow-list {self.path}: {exc.strerror or exc}") from exc
        # mtime granularity can hide two writes within one tick: forget the cache outright.
        with self._lock:
            self._stamp = None

    def check(self, function: CID, code: CID, endorsements: Iterable[Endorsement] = ()) -> str:
        """Say why the Function ``function`` (over ``code``) may run, or refuse it.

        Args:
            function: The Function record's CID (what the Order names).
            code: The record's code CID (consulted only for explicit any-entrypoint entries).
            endorsements: Endorsements sent with the Order.

        Returns:
            ``"allow-list"``, ``"allow-list: code:<CID> (any entrypoint)"``, ``"endorsed by <did>"``
            or ``"endorsed by <did>: code:<CID> (any entrypoint)"``.

        Raises:
            AuthError: Neither the Function nor (explicitly) its code is listed or validly endorsed.
        """
        rules = self._load()
        wide = f"{_CODE_PREFIX}{code.to_v1()} (any entrypoint)"
        if function.to_v1() in rules.functions:
            return "allow-list"
        if code.to_v1() in rules.codes:
            return f"allow-list: {wide}"
        for endorsement in endorsements:
            if endorsement.signer not in rules.signers:
                continue
            if endorsement.valid_for(function):
                return f"endorsed by {endorsement.signer}"
            if endorsement.valid_for_code(code):
                return f"endorsed by {endorsement.signer}: {wide}"
        raise AuthError(
            f"expected a Function on this node's allow-list or endorsed by a trusted key, found "
            f"Function {function} (code {code}) that is neither"
        )


@dataclass(frozen=True)
class _Rules:
    functions: frozenset[CID]
    codes: frozenset[CID]
    signers: frozenset[str]
