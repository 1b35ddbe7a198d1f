"""Environments built from the CAS with uv, offline, and functions run inside them."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from cats_runtime.cas import CID, Block, MemoryBlockStore, _unixfs
from cats_runtime.errors import ExecutionError, IntegrityError
from cats_runtime.execution import (
    TaskResult,
    TaskSpec,
    build_environment,
    distributions_digest,
    run_task,
)
from cats_runtime.execution._environment import MARKER
from cats_runtime.operations import parse_requirements, resolve_environment
from cats_runtime.records import EnvironmentRecord

SixEnv = tuple[MemoryBlockStore, EnvironmentRecord, CID]
SIX = "six==1.17.0 --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274\n"

PROBE = """
import importlib

def main(ctx):
    found = {}
    for name in ctx.params["modules"]:
        try:
            module = importlib.import_module(name)
            found[name] = getattr(module, "__version__", "?")
        except ImportError as exc:
            found[name] = "missing: " + type(exc).__name__
    print("probed", sorted(found))
    ctx.log.info("seed %s", ctx.seed)
    (ctx.output / "found.json").write_text(__import__("json").dumps(found, sort_keys=True))
"""


@pytest.fixture(scope="module")
def six_env() -> tuple[MemoryBlockStore, EnvironmentRecord, CID]:
    store = MemoryBlockStore()
    record, cid = resolve_environment(parse_requirements(SIX, "reqs.txt"), store)
    return store, record, cid


def _empty_env(store: MemoryBlockStore) -> CID:
    record, cid = resolve_environment([], store)
    assert record.distributions == ()
    return cid


def _probe(
    tmp_path: Path, store: MemoryBlockStore, env: CID, modules: list[str]
) -> tuple[TaskResult, dict[str, str]]:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "fn.py").write_text(PROBE)
    doc = tmp_path / "doc.txt"
    doc.write_text("x")
    spec = TaskSpec(
        "batch",
        str(_unixfs.add_path(code, store).cid),
        "fn:main",
        {"doc": str(_unixfs.add_path(doc, store).cid)},
        {"modules": modules},
        7,
        environment=str(env),
        env_cache=str(tmp_path / "envs"),
    )
    (tmp_path / "envs").mkdir(exist_ok=True)
    result = run_task(spec, store, workdir=tmp_path)
    assert result.status == "succeeded", result.log
    assert result.output is not None
    out = MemoryBlockStore()
    for c, d in result.blocks:
        out.put(Block.checked(CID.from_bytes(c), d))
    target = tmp_path / "out"
    _unixfs.get(out, CID.from_bytes(result.output), target)
    found = json.loads((target / "found.json").read_text())
    return result, found


def test_builds_offline_from_the_cas_and_reuses_the_entry(tmp_path: Path, six_env: SixEnv) -> None:
    store, _, cid = six_env
    built = build_environment(store, cid, tmp_path / "envs")
    assert built.python.exists()
    [site] = built.site_packages
    assert (site / "six.py").is_file() and (site / "six-1.17.0.dist-info").is_dir()
    marker = built.python.parent.parent / MARKER
    stamp = marker.stat().st_mtime_ns
    again = build_environment(MemoryBlockStore(), cid, tmp_path / "envs")  # no blocks needed to reuse
    assert again == built and marker.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [str(cid)]  # no temp dir left


def test_a_damaged_entry_is_rebuilt(tmp_path: Path, six_env: SixEnv) -> None:
    store, _, cid = six_env
    built = build_environment(store, cid, tmp_path / "envs")
    (built.site_packages[0] / "six-1.17.0.dist-info" / "RECORD").unlink()
    (built.site_packages[0] / "six.py").write_text("raise SystemExit('tampered')\n")
    rebuilt = build_environment(store, cid, tmp_path / "envs")
    assert (rebuilt.site_packages[0] / "six-1.17.0.dist-info" / "RECORD").is_file()
    assert "tampered" not in (rebuilt.site_packages[0] / "six.py").read_text()


def test_a_changed_file_is_caught_at_first_use_and_rebuilt(tmp_path: Path, six_env: SixEnv) -> None:
    """Not only a missing RECORD: one byte changed in an installed file, dist-info intact."""
    from cats_runtime.execution import _environment

    store, _, cid = six_env
    built = build_environment(store, cid, tmp_path / "envs")
    six_py = built.site_packages[0] / "six.py"
    original = six_py.read_bytes()
    six_py.write_bytes(original.replace(b"Utilities", b"Utilitiez", 1))
    _environment._VERIFIED.clear()  # a new worker process: nothing verified yet
    rebuilt = build_environment(store, cid, tmp_path / "envs")
    assert (rebuilt.site_packages[0] / "six.py").read_bytes() == original


def test_concurrent_builders_agree(tmp_path: Path, six_env: SixEnv) -> None:
    store, _, cid = six_env
    results: list[object] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(build_environment(store, cid, tmp_path / "envs"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3 and len(set(map(repr, results))) == 1
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == [str(cid)]


def test_a_wheel_that_does_not_match_the_record_is_refused(tmp_path: Path, six_env: SixEnv) -> None:
    store, record, _ = six_env
    [dist] = record.distributions
    forged = dataclasses.replace(record, distributions=[dataclasses.replace(dist, sha256="0" * 64)])
    block = forged.to_block()
    store.put(block)
    with pytest.raises(
        IntegrityError, match=r"expected wheel six-1\.17\.0-py2\.py3-none-any\.whl to hash to sha256 0{64}"
    ):
        build_environment(store, block.cid, tmp_path / "envs")
    assert list((tmp_path / "envs").iterdir()) == []


@pytest.mark.parametrize(
    ("change", "wanted"),
    [
        ({"python": "3.10"}, "CPython 3.10 on linux-x86_64"),
        ({"platform": "linux-aarch64"}, "CPython 3.11 on linux-aarch64"),
    ],
)
def test_a_mismatched_interpreter_fails_in_one_line(
    tmp_path: Path, six_env: SixEnv, change: dict[str, str], wanted: str
) -> None:
    store, record, _ = six_env
    other = dataclasses.replace(record, **change)
    block = other.to_block()
    store.put(block)
    with pytest.raises(
        ExecutionError,
        match=rf"^environment {block.cid} needs {wanted}; this node runs CPython 3\.11 on linux-x86_64$",
    ):
        build_environment(store, block.cid, tmp_path / "envs")


def test_without_a_declaration_the_nodes_packages_do_not_import(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    env = _empty_env(store)
    result, found = _probe(tmp_path, store, env, ["yaml", "httpx", "json"])
    # PyYAML and httpx are installed on this node; the Function declared neither.
    assert found == {
        "yaml": "missing: ModuleNotFoundError",
        "httpx": "missing: ModuleNotFoundError",
        "json": "2.0.9",
    }
    assert "probed ['httpx', 'json', 'yaml']" in result.log and "INFO seed 7" in result.log
    assert result.facts["distributions"] == distributions_digest([])


def test_a_declared_distribution_is_exactly_what_imports(tmp_path: Path, six_env: SixEnv) -> None:
    store, _, cid = six_env
    result, found = _probe(tmp_path, store, cid, ["six", "yaml"])
    assert found == {"six": "1.17.0", "yaml": "missing: ModuleNotFoundError"}
    assert result.facts["distributions"] == distributions_digest([("six", "1.17.0")])
    assert result.facts["interpreter"].startswith("cpython 3.11.")


def test_a_failure_inside_the_environment_is_a_failed_task(tmp_path: Path) -> None:
    store = MemoryBlockStore()
    env = _empty_env(store)
    code = tmp_path / "code"
    code.mkdir()
    (code / "fn.py").write_text("def main(ctx):\n    print('before')\n    raise ValueError('bad datum')\n")
    doc = _unixfs.add_bytes(b"x", store)
    (tmp_path / "envs").mkdir()
    spec = TaskSpec(
        "batch",
        str(_unixfs.add_path(code, store).cid),
        "fn:main",
        {"doc": str(doc)},
        {},
        0,
        environment=str(env),
        env_cache=str(tmp_path / "envs"),
    )
    result = run_task(spec, store, workdir=tmp_path)
    assert result.status == "failed" and result.error == "ValueError: bad datum"
    assert "before" in result.log and "Traceback" in result.log and result.output is None


@pytest.mark.slow
def test_numpy_pinned_is_the_numpy_that_runs(tmp_path: Path) -> None:
    # This node has no numpy at all; 2.2.6 is not the newest available, so the pin is what decides.
    store = MemoryBlockStore()
    _, cid = resolve_environment(parse_requirements("numpy==2.2.6\n", "reqs.txt"), store)
    _, found = _probe(tmp_path, store, cid, ["numpy", "yaml"])
    assert found == {"numpy": "2.2.6", "yaml": "missing: ModuleNotFoundError"}
