"""Node identity (Ed25519 + did:key), BOM signatures, bearer tokens and the code allow-list."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cats_runtime.cas import CID, DAG_CBOR, Block
from cats_runtime.errors import AuthError, CredentialsError, InvalidInputError, StoreError
from cats_runtime.operations import (
    AllowList,
    Endorsement,
    NodeIdentity,
    TokenStore,
    did_from_public_key,
    endorse_code,
    endorse_function,
    public_key_from_did,
    sign_bom,
    verify_bom_signature,
    verify_signature,
)
from cats_runtime.records import BOMRecord

# An Ed25519 example DID from the did:key method specification.
SPEC_DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"


def test_did_key_round_trip_and_shape(tmp_path: Path) -> None:
    key = public_key_from_did(SPEC_DID)
    assert len(key) == 32
    assert did_from_public_key(key) == SPEC_DID
    did = NodeIdentity.load_or_create(tmp_path).did
    assert did.startswith("did:key:z6Mk")  # every Ed25519 did:key starts so (0xed01 prefix)


@pytest.mark.parametrize(
    ("did", "match"),
    [
        ("did:web:example.org", "did:key"),
        ("did:key:z0OIl", "base58btc"),
        ("did:key:z" + "2" * 40, "ed25519-pub"),
    ],
)
def test_malformed_dids_are_refused(did: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        public_key_from_did(did)
    assert verify_signature(did, b"x", b"y" * 64) is False


@given(st.binary(max_size=80))
@settings(max_examples=200, deadline=None)
def test_public_key_from_random_text_never_crashes(raw: bytes) -> None:
    text = "did:key:z" + raw.decode("latin-1")
    with contextlib.suppress(InvalidInputError):
        public_key_from_did(text)


def test_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    identity = NodeIdentity.load_or_create(tmp_path)
    key_file = tmp_path / "keys" / "node.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert NodeIdentity.load_or_create(tmp_path).did == identity.did
    assert "PRIVATE" not in repr(identity) and identity.did in repr(identity)


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    dids: list[str] = []
    threads = [
        threading.Thread(target=lambda: dids.append(NodeIdentity.load_or_create(tmp_path).did))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(dids)) == 1
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["node.key"]


def test_a_readable_or_garbled_key_file_is_refused(tmp_path: Path) -> None:
    NodeIdentity.load_or_create(tmp_path)
    key_file = tmp_path / "keys" / "node.key"
    key_file.chmod(0o644)
    with pytest.raises(StoreError, match="mode 0600"):
        NodeIdentity.load_or_create(tmp_path)
    key_file.chmod(0o600)
    key_file.write_bytes(b"not a key")
    with pytest.raises(StoreError, match="PEM Ed25519"):
        NodeIdentity.load_or_create(tmp_path)


def _bom() -> BOMRecord:
    record = Block.encode(b"\xa0", DAG_CBOR).cid  # links to records must be dag-cbor CIDs
    data = Block.encode(b"x").cid
    return BOMRecord(
        order=record,
        invoice=record,
        function=record,
        structure=record,
        inputs={"a": data},
        output=data,
        parents=[],
        issuer=None,
        signature=None,
    )


def test_bom_signatures(tmp_path: Path) -> None:
    identity = NodeIdentity.load_or_create(tmp_path)
    assert verify_bom_signature(_bom()) is None
    signed = sign_bom(_bom(), identity)
    assert signed.issuer == identity.did
    assert verify_bom_signature(signed) is True
    assert verify_bom_signature(BOMRecord.decode(signed.encode())) is True  # survives the round trip
    other = Block.encode(b"y").cid
    assert verify_bom_signature(dataclasses.replace(signed, output=other)) is False
    stranger = NodeIdentity.load_or_create(tmp_path / "other")
    assert verify_bom_signature(dataclasses.replace(signed, issuer=stranger.did)) is False
    assert verify_bom_signature(dataclasses.replace(signed, signature=None)) is False


def test_tokens_are_hashed_at_rest_and_checked(tmp_path: Path) -> None:
    store = TokenStore.for_home(tmp_path)
    a = store.issue("org-a")
    b = store.issue("org-b")
    text = (tmp_path / "node" / "tokens.json").read_text()
    assert a not in text and b not in text
    assert (tmp_path / "node" / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert json.loads(text)["tokens"][0]["org"] == "org-a"
    fresh = TokenStore.for_home(tmp_path)
    assert (fresh.authenticate(a), fresh.authenticate(b)) == ("org-a", "org-b")
    with pytest.raises(CredentialsError, match="unknown token"):
        fresh.authenticate(a + "x")
    assert store.revoke("org-a") == 1
    with pytest.raises(CredentialsError, match="unknown token"):
        fresh.authenticate(a)
    assert fresh.orgs() == ["org-b"]
    with pytest.raises(InvalidInputError, match="organization name"):
        store.issue("../etc")


def test_a_broken_tokens_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("{")
    with pytest.raises(StoreError, match="tokens"):
        TokenStore(path).authenticate("x")


def test_allow_list_and_endorsements(tmp_path: Path) -> None:
    code = CID.decode("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")
    function = CID.compute(b"\xa1ax\x01", DAG_CBOR)
    other = CID.compute(b"\xa1ax\x02", DAG_CBOR)
    rules = AllowList(tmp_path / "allow.txt")
    with pytest.raises(AuthError, match="allow-list"):
        rules.check(function, code)
    rules.add(str(function))
    assert rules.check(function, code) == "allow-list"
    with pytest.raises(AuthError):
        rules.check(other, code)  # same code, another Function (e.g. another entrypoint)
    signer = NodeIdentity.load_or_create(tmp_path / "signer")
    endorsement = endorse_function(signer, other)
    with pytest.raises(AuthError):
        rules.check(other, code, [endorsement])  # signer not trusted yet
    rules.add(signer.did)
    assert rules.check(other, code, [Endorsement.parse(str(endorsement))]) == f"endorsed by {signer.did}"
    third = CID.compute(b"\xa1ax\x03", DAG_CBOR)
    with pytest.raises(AuthError):
        rules.check(third, code, [endorsement])  # endorses another Function
    wide = endorse_code(signer, code)
    assert rules.check(third, code, [wide]) == f"endorsed by {signer.did}: code:{code} (any entrypoint)"
    (tmp_path / "bad.txt").write_text("# comment\n\nnot-a-cid\n")
    with pytest.raises(InvalidInputError, match=r"bad\.txt:3"):
        AllowList(tmp_path / "bad.txt").check(function, code)
    with pytest.raises(InvalidInputError, match="code-any-entrypoint"):
        rules.add(str(code))  # a bare code CID would silently allow every entrypoint
    rules.add(f"code:{code}")
    assert rules.check(third, code) == f"allow-list: code:{code} (any entrypoint)"
    with pytest.raises(InvalidInputError, match="endorsement"):
        Endorsement.parse("no-dot-here")
    assert os.path.exists(tmp_path / "allow.txt")
