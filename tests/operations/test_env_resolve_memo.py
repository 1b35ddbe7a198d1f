"""A rerun with the same pinned requirements asks no index: the earlier resolution is reused
only while its record still satisfies the pins and every wheel is in the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cats_runtime.cas import FSBlockStore
from cats_runtime.operations import parse_requirements, resolve_environment
from cats_runtime.operations._environments import _pins_key

SIX = "six==1.17.0 --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274\n"


def test_the_same_pins_are_not_resolved_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FSBlockStore(tmp_path / "blocks")
    memo = tmp_path / "resolved"
    pins = parse_requirements(SIX, "reqs.txt")
    first = resolve_environment(pins, store, memo=memo)
    assert (memo / _pins_key(pins)).read_text() == str(first[1])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    again = resolve_environment(pins, store, memo=memo)  # would fail if it asked pip
    assert again == first
    # Without the memo the same call needs the index, which is gone: proof the memo did the work.
    from cats_runtime.errors import CatsError

    with pytest.raises(CatsError):
        resolve_environment(pins, store)


def test_a_memo_that_no_longer_holds_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FSBlockStore(tmp_path / "blocks")
    memo = tmp_path / "resolved"
    pins = parse_requirements(SIX, "reqs.txt")
    record, cid = resolve_environment(pins, store, memo=memo)
    # Another pin set pointing at six's record (edited by hand, or a stale memo): not reused.
    other = parse_requirements("six==1.16.0\n", "other.txt")
    (memo / _pins_key(other)).write_text(str(cid))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    from cats_runtime.errors import CatsError

    with pytest.raises(CatsError):
        resolve_environment(other, store, memo=memo)
    # A wheel gone from the store: the memo is not enough either.
    wheel = record.distributions[0].wheel
    store.delete(wheel)
    with pytest.raises(CatsError):
        resolve_environment(pins, store, memo=memo)
