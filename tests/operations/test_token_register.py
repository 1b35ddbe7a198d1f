"""A deployment's secret token (CATS_NODE_TOKEN) is accepted, stored hashed, and registered once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cats_runtime.errors import AuthError, InvalidInputError
from cats_runtime.operations import TokenStore

TOKEN = "cats_" + "k" * 40


def test_register_is_hashed_idempotent_and_authenticates(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    store.register("operator", TOKEN)
    store.register("operator", TOKEN)
    doc = json.loads((tmp_path / "tokens.json").read_text())
    assert len(doc["tokens"]) == 1
    assert TOKEN not in (tmp_path / "tokens.json").read_text()
    assert store.authenticate(TOKEN) == "operator"
    with pytest.raises(AuthError, match="unknown token"):
        store.authenticate("cats_" + "x" * 40)


@pytest.mark.parametrize(
    ("org", "token", "match"), [("op/x", TOKEN, "organization name"), ("op", "short", "24")]
)
def test_register_refuses_bad_input(tmp_path: Path, org: str, token: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        TokenStore(tmp_path / "tokens.json").register(org, token)
    assert not (tmp_path / "tokens.json").exists()


def test_serve_reads_its_settings_from_the_deployment_environment() -> None:
    from cats_runtime.cli import cli

    help_text = CliRunner().invoke(cli, ["node", "serve", "--help"]).output
    # The CatNode Deployment (components/catnode.py) passes these two variables.
    assert "CATS_NODE_TOKEN" in help_text
    assert "CATS_RAY_ADDRESS" in help_text
    source = (Path(__file__).resolve().parents[2] / "components" / "catnode.py").read_text()
    assert '"CATS_NODE_TOKEN"' in source and '"CATS_RAY_ADDRESS"' in source
