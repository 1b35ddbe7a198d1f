"""Fetching for submitters: a bounded pool of its own, fair between organizations, under deadlines.

An Order submitted by CID with ``"from": <gateway>`` is fetched from that gateway by the node.
That work never runs on the threads that answer requests, nor on the run workers: it has its
own ``workers`` threads, and one organization has at most ``per_org`` fetches in progress at
once (the others wait in its own FIFO, served round-robin with the other organizations'), so
a dripping or silent gateway delays only the organization that named it. Each fetch has one
total deadline (:class:`~cats_runtime.cas._netguard.Deadline`), after which its sockets are
shut down and its run fails with that reason.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..errors import AuthError, CatsError, InvalidInputError, LimitError, RecordError, StoreError

__all__ = ["FetchLimits", "FetchPool", "failure_reason"]

log = logging.getLogger(__name__)

GENERIC_FAILURE: Final = (
    "PeerError: the Order could not be fetched from the gateway given in 'from' (unreachable, "
    "refused, incomplete or misbehaving; the node's log has the detail)"
)
"""What a submitter learns of any transport failure: the same text whatever went wrong, so the
node cannot be used to tell a closed port from an answering one."""


@dataclass(frozen=True)
class FetchLimits:
    """How a node fetches Orders for submitters.

    Attributes:
        deadline_s: Total seconds one Order's fetch may take, everything included.
        read_timeout_s: Seconds allowed for connecting and between bytes (within the deadline).
        workers: Fetches in progress at once, over all organizations.
        per_org: Fetches in progress at once for one organization.
    """

    deadline_s: float = 300.0
    read_timeout_s: float = 30.0
    workers: int = 8
    per_org: int = 2

    def __post_init__(self) -> None:
        if not self.deadline_s > 0 or not self.read_timeout_s > 0:
            raise InvalidInputError(
                "expected fetch deadline and read timeout > 0, "
                f"found {self.deadline_s}, {self.read_timeout_s}"
            )
        if self.workers < 1 or self.per_org < 1:
            raise InvalidInputError(
                "expected fetch workers and per-organization fetches >= 1, "
                f"found {self.workers}, {self.per_org}"
            )


def failure_reason(exc: Exception, deadline_passed: bool, deadline_s: float) -> str:
    """The error a submitter sees for a failed fetch (the detail goes to the node's log only).

    The node's own limits (deadline, byte budget) and what the Order's records say (not
    allowed, not an Order) are named; every transport failure reads the same.
    """
    if deadline_passed:
        return (
            f"PeerError: the gateway given in 'from' did not deliver the Order within the node's "
            f"fetch deadline of {deadline_s:g}s"
        )
    if isinstance(exc, (LimitError, AuthError, RecordError)) or type(exc) is InvalidInputError:
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, StoreError):  # the node's own failure, not the peer's
        return "StoreError: the node could not store the Order's blocks (its log has the detail)"
    return GENERIC_FAILURE


class FetchPool:
    """Worker threads running fetch jobs, at most ``per_org`` at once per organization.

    Args:
        workers: Threads (fetches in progress at once).
        per_org: Most jobs of one organization in progress at once.
    """

    def __init__(self, workers: int, per_org: int) -> None:
        self._per_org = per_org
        self._cond = threading.Condition()
        self._waiting: dict[str, collections.deque[Callable[[], None]]] = {}
        self._busy: collections.Counter[str] = collections.Counter()
        self._turn: collections.deque[str] = collections.deque()  # organizations, round-robin
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"cats-fetch-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, org: str, job: Callable[[], None]) -> None:
        """Run ``job`` when a worker is free and ``org`` has fewer than ``per_org`` in progress."""
        with self._cond:
            if org not in self._waiting:
                self._waiting[org] = collections.deque()
                self._turn.append(org)
            self._waiting[org].append(job)
            self._cond.notify()

    def stop(self) -> None:
        """Stop taking jobs (those in progress end at their deadline; the process may exit first)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _next(self) -> tuple[str, Callable[[], None]] | None:
        """The first job, in round-robin order, of an organization below its limit (lock held)."""
        for _ in range(len(self._turn)):
            org = self._turn[0]
            self._turn.rotate(-1)
            if self._busy[org] < self._per_org:
                job = self._waiting[org].popleft()
                if not self._waiting[org]:
                    del self._waiting[org]
                    self._turn.remove(org)
                return org, job
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                picked = self._next()
                while picked is None and not self._stopped:
                    self._cond.wait()
                    picked = self._next()
                if picked is None:
                    return
                org, job = picked
                self._busy[org] += 1
            try:
                job()
            except CatsError:  # a job records its own failure; this is a last resort
                log.exception("a fetch for organization %s failed unrecorded", org)
            except Exception:
                log.exception("a fetch for organization %s crashed", org)
            finally:
                with self._cond:
                    self._busy[org] -= 1
                    if not self._busy[org]:
                        del self._busy[org]
                    self._cond.notify_all()
