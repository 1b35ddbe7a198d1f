"""Declared parameters: ``cats.toml`` next to the code, and checking an Order's params against it.

A Function may declare its parameters in a ``cats.toml`` file at the top of its code directory::

    [params.digits]
    type = "integer"          # string, integer, number, boolean, array, object or any
    default = 3               # optional: without a default the param must be given
    description = "Decimal places of the statistics"

TOML because it is in the standard library (``tomllib``), allows comments next to each
parameter, and leaves room for other sections of the same file; the file is part of the code
directory (so of the code CID) and its parsed form is the Function record's ``params`` field.
A code directory without ``cats.toml`` (or without a ``[params]`` table) declares nothing, and
its params are passed through unchecked, as before declarations existed.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, cast, get_args

from ..errors import InvalidInputError, RecordError
from ..records import ParamDecl, ParamType, json_type_matches, json_type_of

__all__ = ["DECLARATION_FILE", "load_declaration", "resolve_params"]

DECLARATION_FILE: Final = "cats.toml"
_SECTIONS: Final = ("params",)
"""Top-level tables ``cats.toml`` may hold; anything else is refused as a likely typo."""
_KEYS: Final = ("type", "default", "description")


def _json_value(value: Any, where: str) -> Any:
    # TOML has dates and times, which JSON (hence an Order's params) has not.
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{where}: expected a finite number, found {value!r}")
        return value
    if isinstance(value, list):
        return [_json_value(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v, f"{where}.{k}") for k, v in value.items()}
    raise InvalidInputError(f"{where}: expected a JSON value, found a TOML {type(value).__name__}")


def load_declaration(code_dir: Path) -> dict[str, ParamDecl] | None:
    """The params declared in ``code_dir/cats.toml``, or None when it declares none.

    Raises:
        InvalidInputError: the file is not valid TOML, has an unknown table or key, or a
            declaration is malformed (unknown type, a default of another type).
    """
    path = code_dir / DECLARATION_FILE
    if not path.is_file():
        return None
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"expected TOML in {path}, found: {exc}") from None
    unknown = sorted(set(doc) - set(_SECTIONS))
    if unknown:
        raise InvalidInputError(f"{path}: expected only the tables {list(_SECTIONS)}, found {unknown[0]!r}")
    if "params" not in doc:
        return None
    table = doc["params"]
    if not isinstance(table, dict):
        raise InvalidInputError(f"{path}: expected [params.NAME] tables, found params = {table!r}")
    declared: dict[str, ParamDecl] = {}
    for name, spec in table.items():
        where = f"{path}: param {name!r}"
        if not isinstance(spec, dict):
            raise InvalidInputError(
                f"{where}: expected a table with type/default/description, found {spec!r}"
            )
        extra = sorted(set(spec) - set(_KEYS))
        if extra:
            hint = difflib.get_close_matches(extra[0], _KEYS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise InvalidInputError(f"{where}: unknown key {extra[0]!r}{suggestion}; expected {list(_KEYS)}")
        kind = spec.get("type")
        if kind not in get_args(ParamType):
            raise InvalidInputError(f"{where}: expected type in {list(get_args(ParamType))}, found {kind!r}")
        description = spec.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidInputError(f"{where}: expected a string description, found {description!r}")
        default = _json_value(spec["default"], where) if "default" in spec else None
        try:
            declared[str(name)] = ParamDecl(
                type=cast(ParamType, kind), default=default, description=description
            )
        except RecordError as exc:
            raise InvalidInputError(f"{where}: {exc}") from None
    return declared


def resolve_params(declared: Mapping[str, ParamDecl] | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` checked against a declaration, with the declared defaults filled in.

    Undeclared (``declared`` None): ``params`` unchanged. Otherwise every name must be declared,
    every value of its declared type, and every param without a default given.

    Raises:
        InvalidInputError: an unknown name (with the closest declared name as a suggestion),
            a value of the wrong type, or a required param missing.
    """
    values = dict(params)
    if declared is None:
        return values
    for name, value in values.items():
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            names = ", ".join(sorted(declared)) or "none"
            raise InvalidInputError(f"unknown param {name!r}{hint} (declared: {names})")
        spec = declared[name]
        if not json_type_matches(spec.type, value):
            raise InvalidInputError(
                f"expected param {name!r} to be of type {spec.type}, found {json_type_of(value)} {value!r}"
            )
    for name, spec in sorted(declared.items()):
        if name in values:
            continue
        if spec.default is None:
            raise InvalidInputError(f"expected param {name!r} ({spec.type}; it has no default), found none")
        values[name] = spec.default
    return values
