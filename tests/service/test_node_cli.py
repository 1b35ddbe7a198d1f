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
