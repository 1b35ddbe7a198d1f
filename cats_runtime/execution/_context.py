"""The object a CATs function receives: where its inputs are, where to write, what it was asked."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Context", "Datum"]


@dataclass(frozen=True)
class Datum:
    """One top-level entry of the mapped input, in ``map`` mode.

    Attributes:
        input: Name of the Order input the entry belongs to.
        name: The entry's name inside that directory.
        path: Where the entry is materialized (read-only) on this worker.
        cid: The entry's CID (text form).
    """

    input: str
    name: str
    path: Path
    cid: str


@dataclass(frozen=True)
class Context:
    """Everything a function may use; anything else (clock, network, environment) breaks replay.

    A function is called as ``fn(ctx)``. It reads ``ctx.inputs`` (read-only copies materialized
    from the CAS), writes files under ``ctx.output`` (an empty directory), and may log through
    ``ctx.log``; what it prints and logs is captured into the Invoice's log.

    Attributes:
        inputs: Input name -> materialized path (file or directory). In ``map`` mode the mapped
            input's entry is the current datum's path.
        output: An empty directory; everything written here becomes the output.
        params: The Order's JSON parameters.
        seed: The Order's seed; use it for any randomness (``random.Random(ctx.seed)``).
        log: A logger whose records go to the run's log.
        datum: The current datum in ``map`` mode, ``None`` in ``batch`` mode.
    """

    inputs: Mapping[str, Path]
    output: Path
    params: Mapping[str, Any]
    seed: int
    log: logging.Logger
    datum: Datum | None = None
