"""Validate ``cats ... --json`` outputs against the documented schemas in docs/json (tests only)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "json"


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of ``docs/json/<name>.schema.json`` (e.g. ``run``, ``car-export``, ``error``)."""
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate(name: str, data: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``data`` matches the schema ``name``."""
    validator(name).validate(data)
