from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cats_runtime.cas import MemoryBlockStore
from cats_runtime.errors import InvalidInputError
from cats_runtime.operations import DEFAULT_IGNORE, build_function, parse_function_spec
from cats_runtime.records import FunctionRecord


def _code(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "fn.py").write_text("def main(ctx):\n    pass\n")
    (code / "pkg" / "__init__.py").write_text("")
    (code / "pkg" / "mod.py").write_text("def run(ctx):\n    pass\n")
    return code


def test_function_record_fields(tmp_path: Path) -> None:
    code = _code(tmp_path)
    req = tmp_path / "requirements.txt"
    req.write_text("numpy==2.1.0\n")
    store = MemoryBlockStore()
    record, cid = build_function(
        f"{code}:fn:main", store, mode="map", requirements=req, image="sha256:" + "a" * 64
    )
    assert isinstance(record, FunctionRecord)
    assert record.entrypoint == "fn:main" and record.mode == "map" and record.name == "main"
    assert record.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert record.requirements is not None and store.has(record.requirements)
    assert record.image == "sha256:" + "a" * 64
    assert sorted(record.ignore) == sorted(DEFAULT_IGNORE)
    assert store.has(cid) and store.has(record.code)
    assert FunctionRecord.decode(store.get(cid)) == record


def test_code_cid_ignores_caches_and_venvs_but_not_code(tmp_path: Path) -> None:
    code = _code(tmp_path)
    first, _ = build_function(f"{code}:fn:main", None)
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "fn.cpython-311.pyc").write_bytes(b"\x00junk")
    (code / ".venv" / "lib").mkdir(parents=True)
    (code / ".venv" / "lib" / "x.py").write_text("x = 1\n")
    (code / ".git").mkdir()
    (code / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (code / "stale.pyc").write_bytes(b"\x00")
    second, _ = build_function(f"{code}:fn:main", None)
    assert second.code == first.code
    (code / "fn.py").write_text("def main(ctx):\n    return 1\n")
    third, _ = build_function(f"{code}:fn:main", None)
    assert third.code != first.code


def test_dotted_module_entrypoint(tmp_path: Path) -> None:
    code = _code(tmp_path)
    assert parse_function_spec(f"{code}:pkg.mod:run") == (code, "pkg.mod:run")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nocolons", "DIR:module:callable"),
        (":fn:main", "DIR:module:callable"),
        ("{code}:fn:", "dotted module"),
        ("{code}:fn-x:main", "dotted module"),
        ("{code}:missing:main", "found neither"),
        ("{code}/nope:fn:main", "no directory"),
    ],
)
def test_malformed_function_spec(tmp_path: Path, spec: str, match: str) -> None:
    code = _code(tmp_path)
    with pytest.raises(InvalidInputError, match=match):
        parse_function_spec(spec.format(code=code))


def test_bad_mode_and_image(tmp_path: Path) -> None:
    code = _code(tmp_path)
    with pytest.raises(InvalidInputError, match="--mode batch or map"):
        build_function(f"{code}:fn:main", None, mode="stream")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="sha256:<64"):
        build_function(f"{code}:fn:main", None, image="latest")
