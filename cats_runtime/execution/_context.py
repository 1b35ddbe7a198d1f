"""The object a CATs function receives: where its inputs are, where to write, what it was asked.

This module is also loaded on its own inside a task's sandbox (by ``_launcher.py``, with no
``site`` and no ``cats_runtime``), once per task: it imports only ``pathlib`` at run time, and
the logger is made on first use, because every module imported here is paid for by every datum.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping
    from typing import Any

__all__ = ["Context", "Datum"]


class _Frozen:
    __slots__: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is frozen")

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Frozen) and type(other) is type(self) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({body})"


class Datum(_Frozen):
    """One top-level entry of the mapped input, in ``map`` mode.

    Attributes:
        input: Name of the Order input the entry belongs to.
        name: The entry's name inside that directory.
        path: Where the entry is materialized (read-only) on this worker.
        cid: The entry's CID (text form).
    """

    __slots__ = ("cid", "input", "name", "path")
    input: str
    name: str
    path: Path
    cid: str

    def __init__(self, input: str, name: str, path: Path, cid: str) -> None:
        for key, value in (("input", input), ("name", name), ("path", path), ("cid", cid)):
            object.__setattr__(self, key, value)


class Context(_Frozen):
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

    __slots__ = ("_log", "datum", "inputs", "output", "params", "seed")
    inputs: Mapping[str, Path]
    output: Path
    params: Mapping[str, Any]
    seed: int
    datum: Datum | None
    _log: logging.Logger | str

    def __init__(
        self,
        *,
        inputs: Mapping[str, Path],
        output: Path,
        params: Mapping[str, Any],
        seed: int,
        log: logging.Logger | str,
        datum: Datum | None = None,
    ) -> None:
        values = (("inputs", inputs), ("output", output), ("params", params), ("seed", seed))
        for key, value in (*values, ("_log", log), ("datum", datum)):
            object.__setattr__(self, key, value)

    @property
    def log(self) -> logging.Logger:
        """A logger whose records go to the run's log (stderr of the task, as ``LEVEL message``)."""
        log = self._log
        if isinstance(log, str):  # a logger name: made on first use (importing logging costs ms)
            import logging
            import sys

            logger = logging.Logger(log, logging.DEBUG)
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            logger.addHandler(handler)
            object.__setattr__(self, "_log", logger)
            return logger
        return log
