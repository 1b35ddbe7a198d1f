"""The fetch pipeline: blocks received and verified in one thread, stored from another."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from cats_runtime.cas import Block
from cats_runtime.errors import PeerError
from cats_runtime.operations._mesh import _pipelined


def _blocks(n: int, fail: bool = False, closed: list[bool] | None = None) -> Iterator[Block]:
    try:
        for i in range(n):
            yield Block.encode(f"block {i}".encode())
        if fail:
            raise PeerError("the peer stalled")
    finally:
        if closed is not None:
            closed.append(True)


def _receivers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cats-fetch-receive"]


def test_blocks_arrive_in_order_and_the_thread_ends() -> None:
    got = [block.data for block in _pipelined(_blocks(500), depth=4)]
    assert got == [f"block {i}".encode() for i in range(500)]
    assert not _receivers()


def test_a_receive_error_is_raised_after_the_blocks_verified_before_it() -> None:
    got: list[bytes] = []
    with pytest.raises(PeerError, match="stalled"):
        got.extend(block.data for block in _pipelined(_blocks(10, fail=True), depth=2))
    assert len(got) == 10
    assert not _receivers()


def test_a_consumer_that_stops_early_stops_and_joins_the_receiver() -> None:
    # The store failing (or the byte budget) closes the pipeline: the producer, blocked on a
    # full queue, is told to stop, closes its stream and is joined before close() returns.
    closed: list[bool] = []
    received = _pipelined(_blocks(10_000, closed=closed), depth=2)
    assert next(received).data == b"block 0"
    received.close()
    assert closed == [True]
    assert not _receivers()
