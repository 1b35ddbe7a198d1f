"""The ``cats`` command group, shared options, output helpers and the error boundary."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import (
    AuthError,
    BlockNotFoundError,
    CatsError,
    DecodeError,
    ExecutionError,
    IntegrityError,
    InvalidInputError,
    LimitError,
    NotFoundError,
    PeerError,
    PolicyViolationError,
    ProvisionError,
    StoreError,
    VerificationError,
)

__all__ = ["EXIT_CODES", "CliState", "cli", "emit", "main", "progress", "state"]

# Exit codes are part of the interface: scripts branch on them. Most specific class first.
EXIT_CODES: tuple[tuple[type[CatsError], int], ...] = (
    (VerificationError, 4),
    (IntegrityError, 4),
    (InvalidInputError, 2),
    (DecodeError, 2),
    (BlockNotFoundError, 3),
    (NotFoundError, 3),
    (AuthError, 5),
    (PeerError, 6),
    (ProvisionError, 7),
    (PolicyViolationError, 8),
    (LimitError, 9),
    (StoreError, 10),
    (ExecutionError, 1),
    (CatsError, 1),
)
EXIT_HELP = """Exit codes: 0 success; 1 a run or check failed; 2 bad input, usage or malformed data;
3 not found; 4 integrity or verification failure; 5 not authorized; 6 peer or Kubo failure;
7 provisioning failed; 8 policy violation; 9 limit exceeded; 10 store not usable; 130 interrupted."""


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


def _default_home() -> Path:
    env = os.environ.get("CATS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cats"


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_HELP,
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="CATs home (blocks, pins, catalog, keys). Default: $CATS_HOME or ~/.cats.",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(__version__, prog_name="cats")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, debug: bool) -> None:
    """CATs: content-addressed data, code, infrastructure and provenance.

    Every ingredient of a run is content-addressed; a run is recorded as a BOM whose
    CID is enough to re-provision, re-execute and verify it.
    """
    ctx.obj = CliState(home=(home or _default_home()).expanduser(), debug=debug)


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


def emit(as_json: bool, data: Any, text: str | Callable[[], str] | None = None) -> None:
    """Print a command's result: ``data`` as JSON with ``--json``, else ``text``."""
    if as_json:
        click.echo(json.dumps(_jsonable(data), indent=2, sort_keys=True))
    elif text is not None:
        click.echo(text() if callable(text) else text)


class _Spinner:
    """An indeterminate progress line on a terminal: label, a spinner, a count and the elapsed time.

    Used when the total is unknown (a DAG being fetched, a run of unknown length): ``click.progressbar``
    needs a length, and guessing one would make the bar lie.
    """

    _FRAMES = "|/-\\"

    def __init__(self, label: str, stream: Any) -> None:
        self._label = label
        self._stream = stream
        self._count = 0
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="cats-spinner", daemon=True)

    def __enter__(self) -> _Spinner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._draw(final=True)

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
        mark = "done" if final else self._FRAMES[frame % len(self._FRAMES)]
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

    With a known ``total`` it is a bar; with ``total=None`` (the amount is not known up front) it is
    an indeterminate spinner with a running count, never an error.
    """
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    if total is None:
        with _Spinner(label, sys.stderr) as spinner:
            yield spinner.update
        return
    bar: Any
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=False) as bar:
        yield bar.update


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cats`` console script: the one place library errors become exit codes."""
    from . import _commands  # noqa: F401  (registers the commands on ``cli``)

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="cats", standalone_mode=False)
    except CatsError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_code_for(exc))
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OSError as exc:
        # Files the user named that cannot be read or written: one line, not a traceback.
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(10)
    except Exception as exc:
        # A bug of ours must still not greet the user with a traceback: one line, how to see more.
        if debug:
            traceback.print_exc()
        click.echo(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
