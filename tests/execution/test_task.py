from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cats_runtime.cas import CID, Block, MemoryBlockStore, _unixfs
from cats_runtime.errors import ExecutionError, IntegrityError, InvalidInputError
from cats_runtime.execution import (
    DatumRef,
    SourceDesc,
    TaskSpec,
    load_entrypoint,
    materialize,
    open_source,
    run_locally,
    run_task,
)


def _code(tmp_path: Path, name: str, body: str, extra: dict[str, str] | None = None) -> Path:
    code = tmp_path / name
    code.mkdir()
    (code / "fn.py").write_text(body)
    for k, v in (extra or {}).items():
        (code / k).write_text(v)
    return code


def test_two_versions_of_a_module_never_collide(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    one = _code(
        tmp_path,
        "one",
        "from . import helper\n\ndef main(ctx):\n    return helper.V\n",
        {"helper.py": "V = 1\n"},
    )
    two = _code(
        tmp_path,
        "two",
        "from . import helper\n\ndef main(ctx):\n    return helper.V\n",
        {"helper.py": "V = 2\n"},
    )
    c1 = _unixfs.add_path(one, store).cid
    c2 = _unixfs.add_path(two, store).cid
    d1 = materialize(store, c1, tmp_path / "m1")
    d2 = materialize(store, c2, tmp_path / "m2")
    f1 = load_entrypoint(d1, "fn:main", c1)
    f2 = load_entrypoint(d2, "fn:main", c2)
    assert (f1(None), f2(None)) == (1, 2)
    assert f1.__module__ != f2.__module__
    assert not list(d1.rglob("__pycache__"))  # the content-addressed tree stays as it was


def test_entrypoint_errors(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    code = _code(tmp_path, "c", "import not_a_module_anywhere\n")
    cid = _unixfs.add_path(code, store).cid
    with pytest.raises(InvalidInputError, match="module:callable"):
        load_entrypoint(code, "fn.main", cid)
    with pytest.raises(ExecutionError, match=r"cannot import module 'fn'.*ModuleNotFoundError"):
        load_entrypoint(code, "fn:main", cid)
    ok = _code(tmp_path, "d", "X = 1\n")
    okc = _unixfs.add_path(ok, store).cid
    with pytest.raises(ExecutionError, match="expected a callable 'X'"):
        load_entrypoint(ok, "fn:X", okc)


def test_run_task_captures_output_and_failures(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    code = _code(
        tmp_path,
        "c",
        (
            "import sys\n\n"
            "def main(ctx):\n"
            "    print('out line')\n"
            "    print('err line', file=sys.stderr)\n"
            "    ctx.log.warning('careful %s', ctx.params['x'])\n"
            "    if ctx.params['x'] == 'boom':\n"
            "        raise KeyError('boom')\n"
            "    (ctx.output / 'r.txt').write_text(ctx.inputs['a'].read_text() + str(ctx.seed))\n"
        ),
    )
    a = tmp_path / "a.txt"
    a.write_text("A")
    spec = TaskSpec(
        "batch",
        str(_unixfs.add_path(code, store).cid),
        "fn:main",
        {"a": str(_unixfs.add_path(a, store).cid)},
        {"x": "ok"},
        5,
    )
    sink = MemoryBlockStore()
    [ok] = run_locally([spec], store, sink)
    assert ok.status == "succeeded" and ok.output is not None and ok.error is None
    assert "out line" in ok.log and "err line" in ok.log and "WARNING careful ok" in ok.log
    r = {e.name: e.cid for e in _unixfs.ls(sink, ok.output)}["r.txt"]
    assert b"".join(_unixfs.cat(sink, r)) == b"A5"
    bad = run_task(TaskSpec("batch", spec.code, "fn:main", spec.inputs, {"x": "boom"}, 5), store)
    assert bad.status == "failed" and bad.output is None and bad.blocks == []
    assert bad.error == "KeyError: 'boom'" and "Traceback" in bad.log
    assert not logging.getLogger("cats.function.batch").handlers  # task loggers are not global


def test_datum_task_and_missing_input(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    code = _code(
        tmp_path,
        "c",
        "def main(ctx):\n    (ctx.output / ctx.datum.name).write_text(ctx.datum.path.read_text())\n",
    )
    f = tmp_path / "d.txt"
    f.write_text("D")
    fcid = _unixfs.add_path(f, store).cid
    spec = TaskSpec(
        "in/d.txt",
        str(_unixfs.add_path(code, store).cid),
        "fn:main",
        {},
        {},
        0,
        DatumRef("in", "d.txt", str(fcid)),
    )
    result = run_task(spec, store)
    assert result.status == "succeeded"
    missing = TaskSpec("x", spec.code, "fn:main", {"a": str(CID.compute(b"absent"))}, {}, 0)
    failed = run_task(missing, store)
    assert failed.status == "failed" and "BlockNotFoundError" in (failed.error or "")


def test_shipped_blocks_are_verified() -> None:
    good = Block.encode(b"hello")
    source = open_source(SourceDesc("inline"), [(good.cid.buffer, good.data)])
    assert source.get(good.cid) == b"hello"
    with pytest.raises(IntegrityError, match="task arguments"):
        open_source(SourceDesc("inline"), [(good.cid.buffer, b"forged")])
    with pytest.raises(InvalidInputError, match="source kind"):
        open_source(SourceDesc("carrier-pigeon"))  # type: ignore[arg-type]
