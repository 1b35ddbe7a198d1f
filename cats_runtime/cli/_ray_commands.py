"""``cats ray``: the warm local Ray of a home (start, status, stop)."""

from __future__ import annotations

import time

import click

from ..execution import DEFAULT_IDLE_TIMEOUT, IDLE_TIMEOUT_ENV, LocalRay, LocalRayInfo
from ._app import command_set, emit, state

__all__ = ["cli"]

cli = command_set()  # this module's commands; cli/_main.py adds them to `cats`


def _describe(info: LocalRayInfo) -> str:
    age = time.time() - info.started
    return (
        f"running  pid {info.pid}, up {age:.0f} s, {info.runs} run(s), "
        f"stops after {info.idle_timeout:g} s idle\n"
        f"gcs      {info.gcs_address} (loopback, token auth)\n"
        f"session  {info.session_dir}"
    )


def _as_json(info: LocalRayInfo | None) -> dict[str, object]:
    if info is None:
        return {"running": False}
    return {"running": True, **{k: v for k, v in info.__dict__.items() if k != "socket"}}


_GROUP_HELP = f"""The warm local Ray of this home: runs reuse it; it stops by itself when idle.

The first `cats run` (or node Order) on a home starts a Ray for that home, bound to 127.0.0.1
with token authentication, its files under <home>/ray/. Later runs reuse it and so skip Ray's
start-up. It stops after {DEFAULT_IDLE_TIMEOUT:g} s without a run (${IDLE_TIMEOUT_ENV} seconds, or
`cats ray start --idle-timeout`; 0 stops it after each run), on `cats ray stop`, or, for the Ray
a node started, with the node."""


@cli.group("ray", help=_GROUP_HELP)
def ray_group() -> None:
    """The warm local Ray of this home (help text above: it names the configured default)."""


@ray_group.command("start")
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Seconds without a run before it stops (default ${IDLE_TIMEOUT_ENV} or {DEFAULT_IDLE_TIMEOUT:g}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def start(idle_timeout: float | None, as_json: bool) -> None:
    """Start the home's local Ray now (or find the running one)."""
    info, new = LocalRay(state().home).start(idle_timeout=idle_timeout)
    emit(as_json, {**_as_json(info), "new": new}, lambda: ("started\n" if new else "") + _describe(info))


@ray_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def status(as_json: bool) -> None:
    """Say whether the home's local Ray runs, with its pid, session and idle timeout."""
    info = LocalRay(state().home).status()
    emit(as_json, _as_json(info), lambda: "not running" if info is None else _describe(info))


@ray_group.command("stop")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def stop(as_json: bool) -> None:
    """Stop the home's local Ray and wait until every one of its processes is gone."""
    info = LocalRay(state().home).stop()
    text = "not running" if info is None else f"stopped pid {info.pid}"
    emit(as_json, {"stopped": info is not None, "pid": None if info is None else info.pid}, text)
