"""The `cats node` administration commands and `cats fetch` errors, as real processes."""

from __future__ import annotations

import json
from pathlib import Path

from nodeproc import SLOW_FN, cats

from cats_runtime.operations import AllowList, Endorsement, NodeIdentity, TokenStore, build_function


def test_id_token_allow_and_endorse(tmp_path: Path) -> None:
    home = tmp_path / "home"
    did = cats(home, "node", "id").stdout.strip()
    assert did == NodeIdentity.load_or_create(home).did
    assert json.loads(cats(home, "node", "id", "--json").stdout)["did"] == did
    token = cats(home, "node", "token", "add", "partner").stdout.strip()
    assert TokenStore.for_home(home).authenticate(token) == "partner"
    assert cats(home, "node", "token", "ls").stdout.split() == ["partner"]
    assert "revoked 1" in cats(home, "node", "token", "rm", "partner").stdout
    bad = cats(home, "node", "token", "add", "a/b", check=False)
    assert bad.returncode == 2 and "organization name" in bad.stderr
    record, function = build_function(f"{SLOW_FN}:slow:main", None)
    listed = cats(home, "node", "allow", "--function", f"{SLOW_FN}:slow:main", did).stdout.split()
    assert listed == [str(function), did]
    assert AllowList.for_home(home).check(function, record.code) == "allow-list"
    endorsement = Endorsement.parse(cats(home, "node", "endorse", str(function)).stdout.strip())
    assert endorsement.signer == did and endorsement.valid_for(function)
    code_only = cats(home, "node", "endorse", str(record.code), check=False)
    assert code_only.returncode == 2 and "--code-any-entrypoint" in code_only.stderr
    wide = cats(home, "node", "endorse", "--code-any-entrypoint", str(record.code)).stdout.strip()
    assert Endorsement.parse(wide).valid_for_code(record.code)
    wrong = cats(home, "node", "allow", "not-a-cid", check=False)
    assert wrong.returncode == 2


def test_fetch_from_nowhere_is_a_clean_error(tmp_path: Path) -> None:
    out = cats(
        tmp_path / "h",
        "fetch",
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
        "--from",
        "http://127.0.0.1:9",
        check=False,
    )
    assert out.returncode == 3  # not found anywhere (the peer did not answer)
    assert "error:" in out.stderr and "Traceback" not in out.stderr
    bad = cats(tmp_path / "h", "fetch", "bafkqaaa", "--from", "ftp://x", check=False)
    assert bad.returncode == 2 and "http" in bad.stderr


def test_gateways_are_registered_with_a_token_and_listed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = cats(
        home,
        "node",
        "token",
        "add",
        "partner",
        "--gateway",
        "http://127.0.0.1:8700/",
        "--gateway",
        "https://Peer.Example.org/cats",
        "--json",
    )
    doc = json.loads(out.stdout)
    assert doc["gateways"] == ["http://127.0.0.1:8700", "https://peer.example.org:443/cats"]
    tokens = TokenStore.for_home(home)
    assert tokens.authenticate(doc["token"]) == "partner"
    assert tokens.gateway_for("partner", "http://user:pw@127.0.0.1:8700/?apikey=x") is not None
    assert tokens.gateway_for("other", "http://127.0.0.1:8700") is None
    assert cats(home, "node", "token", "ls").stdout.split() == ["partner", *doc["gateways"]]
    cats(home, "node", "token", "gateway", "partner", "http://peer.internal:8700", "--allow-private")
    listed = json.loads(cats(home, "node", "token", "gateway", "partner", "--json").stdout)
    assert {"url": "http://peer.internal:8700", "private": True} in listed and len(listed) == 3
    cats(home, "node", "token", "gateway", "partner", "--remove", "https://peer.example.org/cats")
    assert "peer.example.org" not in cats(home, "node", "token", "gateway", "partner").stdout
    # Nothing secret is ever stored: a URL with credentials or a query is refused, no token issued.
    for url in ("http://u:secret@127.0.0.1:1", "http://127.0.0.1:1/?token=x", "ftp://127.0.0.1"):
        bad = cats(home, "node", "token", "add", "leaky", "--gateway", url, check=False)
        assert bad.returncode == 2 and "error" in bad.stderr.lower() and "Traceback" not in bad.stderr
        assert "secret" not in bad.stderr
    assert tokens.orgs() == ["partner"]
    assert "secret" not in (home / "node" / "tokens.json").read_text()
    # Revoking an organization forgets its gateways too.
    cats(home, "node", "token", "rm", "partner")
    assert tokens.gateways() == []
    serve = cats(home, "node", "serve", "--port", "1", "--allow-gateway", "http://u:p@h:1", check=False)
    assert serve.returncode == 2 and "without credentials" in serve.stderr
