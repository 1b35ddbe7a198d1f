"""The ``cats`` group, the one place every command module's commands are added to it, and ``main``.

``main`` is the error boundary: library errors become one line on stderr and a documented exit
code (see :data:`EXIT_HELP`); with ``--json`` the same error is also a JSON object on stdout.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from pathlib import Path

import click

from .. import __version__
from ..errors import CatsError
from . import _cas_commands, _env_commands, _iac_commands, _node_commands, _ray_commands, _run_commands
from ._app import (
    EXIT_HELP,
    CliState,
    default_home,
    error_json,
    exit_code_for,
    json_emitted,
    reset_json_emitted,
)

__all__ = ["cli", "main"]

# Order does not matter to click (it sorts commands in --help); listing the modules here is what
# makes their commands part of `cats`.
_COMMAND_MODULES = (_cas_commands, _run_commands, _node_commands, _iac_commands, _env_commands, _ray_commands)


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
    ctx.obj = CliState(home=(home or default_home()).expanduser(), debug=debug)


for _module in _COMMAND_MODULES:
    for _command in _module.cli.commands.values():
        if _command.name in cli.commands:
            raise RuntimeError(f"two command modules define `cats {_command.name}`")
        cli.add_command(_command)


def _wants_json(args: list[str]) -> bool:
    # Scanned from argv rather than from the command's options: a usage error has no parsed
    # options, and a script that asked for JSON must get JSON whatever went wrong.
    head = args[: args.index("--")] if "--" in args else args
    return "--json" in head


# C0/C1 control characters except tab: error text can carry a peer's or a record's words, and a
# terminal must not take them as escape sequences (window titles, clipboard writes, a fake "done").
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _one_line(message: str) -> str:
    r"""The error text as one printable line: control characters shown as ``\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", message)


def _fail(exc: BaseException, message: str, code: int, *, as_json: bool, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    click.echo(f"error: {_one_line(message)}", err=True)
    if as_json and not json_emitted():
        click.echo(error_json(exc, message, code))
    sys.exit(code)


def _quiet_library_logs(debug: bool) -> None:
    # The library logs what it skipped or retried (a peer that refused, a block re-fetched); a
    # command reports its own outcome, so those records would be extra lines around the one
    # result or error line. They are shown with --debug; `cats node serve` shows its own.
    library = logging.getLogger("cats_runtime")
    if debug:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    elif not library.handlers:
        library.addHandler(logging.NullHandler())


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cats`` console script: the one place library errors become exit codes."""
    args = list(argv if argv is not None else sys.argv[1:])
    debug = "--debug" in args
    as_json = _wants_json(args)
    _quiet_library_logs(debug)
    reset_json_emitted()
    try:
        rv = cli.main(args=args, prog_name="cats", standalone_mode=False)
    except CatsError as exc:
        _fail(exc, str(exc), exit_code_for(exc), as_json=as_json, debug=debug)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        if as_json and not json_emitted():
            click.echo(error_json(exc, "interrupted", 130))
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        # Usage errors too are one line (click's own form is three: usage, hint, error).
        message = exc.format_message()
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            message += f" (see `{exc.ctx.command_path} --help`)"
        if as_json:
            click.echo(error_json(exc, message, exc.exit_code))
        click.echo(f"error: {_one_line(message)}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        # Files the user named that cannot be read or written: one line, not a traceback.
        text = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        _fail(exc, text, 10, as_json=as_json, debug=debug)
    except Exception as exc:
        # A bug of ours must still not greet the user with a traceback: one line, how to see more.
        text = f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)"
        _fail(exc, text, 1, as_json=as_json, debug=debug)
    sys.exit(rv if isinstance(rv, int) else 0)
