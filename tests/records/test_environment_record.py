"""The cats/environment@1 record and the Function's link to it: strict both ways."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cats_runtime.cas import CID, DAG_CBOR, DAG_PB, RAW, _dagcbor
from cats_runtime.errors import RecordError
from cats_runtime.records import Distribution, EnvironmentRecord, FunctionRecord, decode_record


def _cid(seed: str, codec: int = RAW) -> CID:
    return CID.compute(seed.encode(), codec)


def _dist(name: str, version: str = "1.0") -> Distribution:
    return Distribution(
        name=name,
        version=version,
        filename=f"{name.replace('-', '_')}-{version}-py3-none-any.whl",
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        size=123,
        wheel=_cid(name),
    )


ENV = EnvironmentRecord(
    python="3.11",
    implementation="cpython",
    platform="linux-x86_64",
    distributions=[_dist("python-dateutil", "2.9.0.post0"), _dist("six", "1.17.0")],
)


def test_round_trip_and_links_are_walkable() -> None:
    block = ENV.to_block()
    assert decode_record(block.data) == ENV
    assert sorted(_dagcbor.iter_links(_dagcbor.decode(block.data)), key=str) == sorted(
        (d.wheel for d in ENV.distributions), key=str
    )


def _wire(**changes: Any) -> bytes:
    obj = ENV.to_obj()
    obj.update(changes)
    return _dagcbor.encode(obj)


def _dist_obj(dist: Distribution, **changes: Any) -> dict[str, Any]:
    obj = {k: getattr(dist, k) for k in Distribution.FIELDS}
    obj.update(changes)
    return obj


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"python": "3"}, r"field 'python' expected a Python version"),
        ({"implementation": "CPython"}, r"field 'implementation'"),
        ({"distributions": [_dist_obj(_dist("six")), _dist_obj(_dist("attrs"))]}, r"sorted and unique"),
        ({"distributions": [_dist_obj(_dist("six")), _dist_obj(_dist("six"))]}, r"sorted and unique"),
        ({"distributions": [_dist_obj(_dist("six"), name="Six")]}, r"normalized distribution name"),
        ({"distributions": [_dist_obj(_dist("six"), sha256="AB" * 32)]}, r"sha256 digest"),
        ({"distributions": [_dist_obj(_dist("six"), filename="six-1.0.tar.gz")]}, r"wheel file name"),
        (
            {"distributions": [_dist_obj(_dist("six"), filename="../six-1.0-py3-none-any.whl")]},
            r"wheel file name",
        ),
        ({"distributions": [{**_dist_obj(_dist("six")), "extra": 1}]}, r"not a field"),
        ({"platform": None}, r"field 'platform'"),
    ],
)
def test_decode_rejects(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(RecordError, match=match):
        decode_record(_wire(**changes))


def test_function_links_its_environment_and_its_cid_covers_it() -> None:
    base = {
        "name": "f",
        "code": _cid("code", DAG_PB),
        "entrypoint": "fn:main",
        "mode": "batch",
        "python": "3.11",
    }
    linked = FunctionRecord(**base, environment=ENV.cid)
    other = FunctionRecord(**base, environment=dataclasses.replace(ENV, python="3.12").cid)
    assert decode_record(linked.encode()) == linked
    assert len({linked.cid, other.cid, FunctionRecord(**base).cid}) == 3
    with pytest.raises(RecordError, match=r"field 'environment'"):
        FunctionRecord(**base, environment=_cid("raw"))  # a record link must be dag-cbor
    assert ENV.cid.codec == DAG_CBOR


names = st.from_regex(r"[a-z0-9]{1,6}(-[a-z0-9]{1,4}){0,2}", fullmatch=True)


@given(st.lists(names, unique=True, max_size=5), st.sampled_from(["3.11", "3.12", "3.13"]))
def test_round_trip_any_environment(dist_names: list[str], python: str) -> None:
    env = EnvironmentRecord(
        python=python,
        implementation="cpython",
        platform="linux-x86_64",
        distributions=[_dist(n) for n in sorted(dist_names)],
    )
    assert decode_record(env.encode()) == env
