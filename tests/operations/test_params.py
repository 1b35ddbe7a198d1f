"""Declared params (cats.toml) and the static pre-flight of an entrypoint: nothing here starts Ray."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cats_runtime.cas import _unixfs
from cats_runtime.errors import InvalidInputError
from cats_runtime.operations import (
    Node,
    build_function,
    check_entrypoint,
    inspect_function,
    load_declaration,
    make_order,
    parse_param,
    resolve_params,
    store_structure,
)
from cats_runtime.operations._structure import local_structure
from cats_runtime.records import ParamDecl

MakeFunction = Callable[..., str]

DECLARATION = """
# the params of this Function
[params.digits]
type = "integer"
default = 3
description = "Decimal places"

[params.column]
type = "string"

[params.weights]
type = "array"
default = [1, 2.5]
"""


def _code(tmp_path: Path, declaration: str, name: str = "code") -> Path:
    code = tmp_path / name
    code.mkdir()
    (code / "fn.py").write_text("def main(ctx):\n    pass\n")
    (code / "cats.toml").write_text(declaration)
    return code


def test_declaration_is_read_and_recorded_in_the_function(tmp_path: Path) -> None:
    code = _code(tmp_path, DECLARATION)
    declared = load_declaration(code)
    assert declared == {
        "digits": ParamDecl(type="integer", default=3, description="Decimal places"),
        "column": ParamDecl(type="string"),
        "weights": ParamDecl(type="array", default=[1, 2.5]),
    }
    record, _ = build_function(f"{code}:fn:main", None)
    assert record.params == declared
    plain, _ = build_function(f"{_code(tmp_path, '', 'plain')}:fn:main", None)
    assert plain.params is None, "no [params] table: nothing declared, params pass through"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[params.n]\ntype = 'int'\n", r"param 'n': expected type in \['string', 'integer'"),
        (
            "[params.n]\ntype = 'integer'\ndefault = 'x'\n",
            r"expected a default of type integer, found string",
        ),
        (
            "[params.n]\ntype = 'integer'\ndefualt = 1\n",
            r"unknown key 'defualt' \(did you mean 'default'\?\)",
        ),
        ("[param.n]\ntype = 'integer'\n", r"expected only the tables \['params'\], found 'param'"),
        ("[params.n]\ntype = 'string'\ndefault = 1979-05-27\n", r"expected a JSON value, found a TOML date"),
        ("params = 3\n", r"expected \[params.NAME\] tables"),
        ("[params\n", r"expected TOML in .*cats.toml"),
    ],
)
def test_malformed_declarations_are_refused(tmp_path: Path, text: str, match: str) -> None:
    code = _code(tmp_path, text)
    with pytest.raises(InvalidInputError, match=match):
        load_declaration(code)
    with pytest.raises(InvalidInputError, match=match):
        inspect_function(f"{code}:fn:main")


def test_params_are_checked_and_defaults_applied() -> None:
    declared = {
        "digits": ParamDecl(type="integer", default=3),
        "column": ParamDecl(type="string"),
        "scale": ParamDecl(type="number", default=1.5),
    }
    assert resolve_params(declared, {"column": "x"}) == {"column": "x", "digits": 3, "scale": 1.5}
    assert resolve_params(declared, {"column": "x", "scale": 2}) == {"column": "x", "digits": 3, "scale": 2}
    with pytest.raises(InvalidInputError, match=r"unknown param 'digts'; did you mean 'digits'\?"):
        resolve_params(declared, {"column": "x", "digts": 3})
    with pytest.raises(InvalidInputError, match=r"unknown param 'zzz' \(declared: column, digits, scale\)"):
        resolve_params(declared, {"zzz": 1})
    with pytest.raises(
        InvalidInputError, match=r"expected param 'digits' to be of type integer, found string"
    ):
        resolve_params(declared, {"column": "x", "digits": "3"})
    with pytest.raises(
        InvalidInputError, match=r"expected param 'digits' to be of type integer, found boolean"
    ):
        resolve_params(declared, {"column": "x", "digits": True})
    with pytest.raises(InvalidInputError, match=r"expected param 'column' \(string; it has no default\)"):
        resolve_params(declared, {})
    assert resolve_params(None, {"anything": [1]}) == {"anything": [1]}, "undeclared: as before"


def test_string_params_are_taken_verbatim_when_declared() -> None:
    declared = {"label": ParamDecl(type="string"), "n": ParamDecl(type="integer")}
    assert parse_param("label=3", declared) == ("label", "3")
    assert parse_param("n=3", declared) == ("n", 3)
    assert parse_param("label=3") == ("label", 3), "undeclared: JSON when it parses"


def test_the_order_records_the_defaults(node: Node, tmp_path: Path) -> None:
    _, fn = build_function(f"{_code(tmp_path, DECLARATION)}:fn:main", node.store)
    doc = tmp_path / "doc.txt"
    doc.write_text("x")
    data = _unixfs.add_path(doc, node.store).cid
    structure = store_structure(local_structure(), node.store)
    order, _ = make_order(node, fn, {"doc": data}, {"column": "sepal"}, 0, structure)
    assert dict(order.params) == {"column": "sepal", "digits": 3, "weights": [1, 2.5]}
    with pytest.raises(InvalidInputError, match="did you mean 'digits'"):
        make_order(node, fn, {"doc": data}, {"column": "sepal", "digts": 2}, 0, structure)


@pytest.mark.parametrize(
    ("source", "callable_name", "match"),
    [
        (
            "def mian(ctx):\n    pass\n",
            "main",
            r"expected a callable 'main' in module 'fn' .*did you mean 'mian'\?",
        ),
        ("x = 1\n", "main", r"expected a callable 'main' in module 'fn' .* found none$"),
        ("def main():\n    pass\n", "main", r"expected fn:main to accept one context argument"),
        ("def main(ctx, other):\n    pass\n", "main", r"to accept one context argument"),
        ("def main(ctx, *, must):\n    pass\n", "main", r"to accept one context argument"),
        ("main = lambda: None\n", "main", r"to accept one context argument"),
        ("async def main(ctx):\n    pass\n", "main", r"found an async def"),
        (
            "def main(ctx)\n    pass\n",
            "main",
            r"expected module 'fn' to be valid Python, found a syntax error at",
        ),
    ],
)
def test_entrypoint_problems_are_found_without_running_code(
    make_function: MakeFunction, source: str, callable_name: str, match: str
) -> None:
    # Each module would also write a marker if it were ever imported: it must not be.
    spec = make_function(
        "import pathlib; pathlib.Path(__file__).with_name('IMPORTED').touch()\n" + source, callable_name
    )
    with pytest.raises(InvalidInputError, match=match):
        build_function(spec, None)
    assert not (Path(spec.rsplit(":", 2)[0]) / "IMPORTED").exists()


@pytest.mark.parametrize(
    "source",
    [
        "def main(ctx):\n    pass\n",
        "def main(ctx, extra=1, *rest, flag=False, **kw):\n    pass\n",
        "def main(*args):\n    pass\n",
        "main = lambda ctx: None\n",
        "try:\n    import numpy\n    def main(ctx): pass\nexcept ImportError:\n    def main(ctx): pass\n",
        "if True:\n    def main(ctx): pass\n",
        "from helpers import main\n",
        "from helpers import *\n",
        "import functools\n@functools.cache\ndef main():\n    pass\n",
        "class main:\n    def __init__(self, ctx): pass\n",
        "def __getattr__(name):\n    return print\n",
    ],
)
def test_what_cannot_be_refuted_statically_is_accepted(make_function: MakeFunction, source: str) -> None:
    spec = make_function(source)
    code, module, attr = spec.rsplit(":", 2)
    check_entrypoint(Path(code), f"{module}:{attr}")


def test_a_package_module_is_read_from_its_init(tmp_path: Path) -> None:
    pkg = tmp_path / "code" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("def run(ctx):\n    pass\n")
    check_entrypoint(tmp_path / "code", "pkg:run")
    with pytest.raises(InvalidInputError, match=r"expected a callable 'main' in module 'pkg'"):
        check_entrypoint(tmp_path / "code", "pkg:main")
