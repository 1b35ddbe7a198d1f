"""The --json schemas in docs/json: valid draft 2020-12, indexed by the README, one per command that
has --json (real outputs are validated against them in test_pty.py and below)."""

from __future__ import annotations

import json
import re

import click
import pytest
from jsonschema import Draft202012Validator, ValidationError
from schemas import SCHEMA_DIR, validate

from cats_runtime.cli import cli


def _json_commands() -> list[str]:
    found: list[str] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        elif any(isinstance(p, click.Option) and "--json" in p.opts for p in cmd.params):
            found.append("-".join(path))

    walk(cli, [])
    return sorted(found)


@pytest.mark.parametrize("command", _json_commands())
def test_every_json_command_has_a_schema_indexed_by_the_readme(command: str) -> None:
    path = SCHEMA_DIR / f"{command}.schema.json"
    assert path.is_file(), f"`cats {command.replace('-', ' ')} --json` has no schema {path.name}"
    assert f"]({path.name})" in (SCHEMA_DIR / "README.md").read_text()


@pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.schema.json")), ids=lambda p: p.name)
def test_schema_is_valid_draft_2020_12(path: object) -> None:
    schema = json.loads(path.read_text())  # type: ignore[attr-defined]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_schemas_refuse_what_they_do_not_describe() -> None:
    # The schemas are tight enough to catch a renamed field or a non-CID where a CID belongs.
    good = {
        "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
        "size": 3,
        "stored": True,
        "pinned": True,
    }
    validate("add", good)
    for bad in (
        {**good, "cid": "hello"},
        {k: v for k, v in good.items() if k != "size"},
        {**good, "size": -1},
    ):
        with pytest.raises(ValidationError):
            validate("add", bad)
    with pytest.raises(ValidationError):
        validate("error", {"error": "X", "message": "m"})


def test_the_readme_lists_no_schema_that_does_not_exist() -> None:
    listed = re.findall(r"\]\(([\w-]+\.schema\.json)\)", (SCHEMA_DIR / "README.md").read_text())
    assert listed and all((SCHEMA_DIR / name).is_file() for name in listed)
