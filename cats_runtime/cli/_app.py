"""What every command module shares: options state, output helpers, progress and exit codes.

Command modules import only this module (and the library). Each collects its commands on its own
detached group (:func:`command_set`); ``cli/_main.py`` is the one place that adds them to the
``cats`` group, so importing a command module registers nothing anywhere.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..cas import CID
from ..errors import (
    AddressInUseError,
    AuthError,
    BlockNotFoundError,
    CatsError,
    DecodeError,
    ExecutionError,
    IntegrityError,
    InvalidInputError,
    LimitError,
    MissingExtraError,
    NotFoundError,
    PeerError,
    PolicyViolationError,
    ProvisionError,
    StoreError,
    VerificationError,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_HELP",
    "CliState",
    "cid_arg",
    "command_set",
    "emit",
    "error_json",
    "exit_code_for",
    "json_emitted",
    "reset_json_emitted",
    "progress",
    "state",
]

# Exit codes are part of the interface: scripts branch on them. Most specific class first.
EXIT_CODES: tuple[tuple[type[CatsError], int], ...] = (
    (VerificationError, 4),
    (IntegrityError, 4),
    (InvalidInputError, 2),
    (MissingExtraError, 2),
    (DecodeError, 2),
    (BlockNotFoundError, 3),
    (NotFoundError, 3),
    (AuthError, 5),
    (PeerError, 6),
    (ProvisionError, 7),
    (PolicyViolationError, 8),
    (LimitError, 9),
    (StoreError, 10),
    (AddressInUseError, 10),
    (ExecutionError, 1),
    (CatsError, 1),
)
EXIT_HELP = """Exit codes: 0 success; 1 a run or check failed; 2 bad input, usage, malformed data or
a missing optional extra (the message says what to install);
3 not found; 4 integrity or verification failure; 5 not authorized; 6 peer or Kubo failure;
7 provisioning failed; 8 policy violation; 9 limit exceeded; 10 store, file or listening address
not usable (home locked by another node, port in use); 130 interrupted. With --json, an error is
also printed on stdout as {"error": CLASS, "message": TEXT, "exit_code": N}."""


def exit_code_for(exc: CatsError) -> int:
    """The process exit code for a library error."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


@dataclass
class CliState:
    """Options shared by every command."""

    home: Path
    debug: bool = False


def default_home() -> Path:
    """``$CATS_HOME``, else ``~/.cats``."""
    env = os.environ.get("CATS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cats"


def command_set() -> click.Group:
    """A detached group that collects one command module's commands.

    Each module names it ``cli`` so its decorators read ``@cli.command()`` like the root group's;
    ``cli/_main.py`` copies its commands onto the ``cats`` group.
    """
    return click.Group()


def cid_arg(value: str) -> CID:
    """Parse a CID given on the command line (``InvalidCIDError`` becomes one line, exit 2)."""
    return CID.decode(value)


def state() -> CliState:
    """The shared options of the running command."""
    obj = click.get_current_context().find_root().obj
    assert isinstance(obj, CliState)
    return obj


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # CIDs and other value types print as their canonical text


_json_emitted = threading.Event()


def json_emitted() -> bool:
    """Whether this command already printed a JSON result (the error boundary then adds none)."""
    return _json_emitted.is_set()


def reset_json_emitted() -> None:
    """Forget earlier results: ``main`` may run several commands in one process (the tests do)."""
    _json_emitted.clear()


def emit(as_json: bool, data: Any, text: str | Callable[[], str] | None = None) -> None:
    """Print a command's result: ``data`` as JSON with ``--json``, else ``text``.

    Exactly one JSON document goes to stdout per command: a result that describes a failure
    (a failed run, a verification mismatch) carries its own status, so the boundary adds no error.
    """
    if as_json:
        _json_emitted.set()
        click.echo(json.dumps(_jsonable(data), indent=2, sort_keys=True))
    elif text is not None:
        click.echo(text() if callable(text) else text)


def emit_stream(
    as_json: bool, items: Iterable[Any], text_lines: Callable[[Any], Iterable[str]], head: str
) -> None:
    """Like :func:`emit` for a list that may be long: each item is printed as it comes.

    ``--json`` prints exactly what ``emit`` prints for the whole list (one JSON array, the same
    layout); the text form prints ``head``, then ``text_lines(item)`` for each item.
    """
    if as_json:
        _json_emitted.set()
        first = True
        for item in items:
            body = json.dumps(_jsonable(item), indent=2, sort_keys=True).replace("\n", "\n  ")
            click.echo(("[\n  " if first else ",\n  ") + body, nl=False)
            first = False
        click.echo("[]" if first else "\n]")
        return
    click.echo(head)
    for item in items:
        for line in text_lines(item):
            click.echo(line)


class _Progress:
    """One progress line on a terminal: label, percentage or spinner, count, elapsed time.

    A spinner when the total is not known (a DAG being fetched, a run of unknown length).

    On success the line ends with "done"; on failure it is erased, so the error is the only line
    the command leaves on the terminal.
    """

    _FRAMES = "|/-\\"

    def __init__(self, label: str, stream: Any, total: int | None) -> None:
        self._label = label
        self._stream = stream
        self._total = total
        self._count = 0
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="cats-spinner", daemon=True)

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None:
            self._draw(final=True)
        else:  # the command failed: erase the line, so the error is the only line left
            self._erase()

    def _erase(self) -> None:
        try:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def update(self, n: int) -> None:
        with self._lock:
            self._count += n

    def _loop(self) -> None:
        frame = 0
        while not self._stop.wait(0.1):
            self._draw(frame=frame)
            frame += 1

    def _draw(self, *, frame: int = 0, final: bool = False) -> None:
        with self._lock:
            count = self._count
        elapsed = time.monotonic() - self._start
        if final:
            mark = "done"
        elif self._total:
            mark = f"{min(100, 100 * count // self._total):3d}%"
        else:
            mark = self._FRAMES[frame % len(self._FRAMES)]
        line = f"\r{self._label} {mark} {_human(count)} {elapsed:.1f}s\x1b[K"
        try:
            self._stream.write(line + ("\n" if final else ""))
            self._stream.flush()
        except (OSError, ValueError):  # the terminal went away: progress is best-effort
            self._stop.set()


def _human(n: int) -> str:
    # Callers advance by bytes (adds, gets, re-hashing) or by datums (runs); both read fine as a count.
    value = float(n)
    for unit in ("", "K", "M", "G"):
        if value < 1024:
            return f"{n}" if unit == "" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"


@contextmanager
def progress(label: str, total: int | None, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Progress on stderr when it is a terminal; yields an ``advance(n)`` callback.

    With a known ``total`` it shows a percentage; with ``total=None`` (the amount is not known up
    front) a spinner with a running count, never an error.
    """
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    with _Progress(label, sys.stderr, total) as line:
        yield line.update


def error_json(exc: BaseException, message: str, code: int) -> str:
    """The ``--json`` form of an error: ``{"error": CLASS, "message": TEXT, "exit_code": N}``."""
    return json.dumps({"error": type(exc).__name__, "message": message, "exit_code": code}, sort_keys=True)
