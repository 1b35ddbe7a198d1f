"""Commands of the CAT Mesh: serve a node, its identity and access rules, fetch and submit by CID."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import click

from ..cas import Destination, Repo
from ..errors import AddressInUseError, FunctionFailedError, InvalidInputError
from ..execution import TaskLimits
from ..operations import (
    AllowList,
    Node,
    NodeIdentity,
    TokenStore,
    build_function,
    endorse_code,
    endorse_function,
    fetch_from_peers,
    import_input,
    load_params_file,
    local_structure,
    make_order,
    parse_param,
    store_structure,
    submit_order,
    wait_for_run,
)
from ._app import cid_arg, command_set, emit, state

__all__ = ["cli"]

cli = command_set()  # this module's commands; cli/_main.py adds them to `cats`

_SERVICE_FACTORY = "cats_runtime.service:app_from_environment"
_SERVICE_PROTOCOL = "cats_runtime.service._server:GuardedProtocol"  # cats_runtime.service.PROTOCOL
_CONFIG_ENV = "CATS_NODE_CONFIG"  # read by the service's factory (cats_runtime.service.CONFIG_ENV)
MiB = 1 << 20


def _identity(home: Path) -> NodeIdentity:
    Repo.open(home)  # a fresh home becomes a repository before keys/ appears in it
    return NodeIdentity.load_or_create(home)


@cli.group("node")
def node() -> None:
    """Run and administer this organization's CAT Node (HTTP API + IPFS trustless gateway)."""


@node.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind. Anything but loopback exposes the node: put TLS in front of it.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8700,
    show_default=True,
    help="TCP port (0: any free port; the announcement and --port-file name the one bound).",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bound port to this file once the node is ready to serve.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Hashed tokens file (default <home>/node/tokens.json; manage with `cats node token`).",
)
@click.option(
    "--allow",
    "allow_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Allow-list file of code CIDs and trusted did:keys (default <home>/node/allow.txt).",
)
@click.option(
    "--max-car-mib",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Largest CAR body accepted by POST /orders, in MiB.",
)
@click.option(
    "--max-json-kib",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Largest JSON body accepted, in KiB.",
)
@click.option(
    "--max-car-response-mib",
    type=click.IntRange(1),
    default=1024,
    show_default=True,
    help="Most bytes one gateway CAR response sends (dups=y included), in MiB; past it the CAR ends early.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a request's headers; then 408 and the connection is closed.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds a client has to send a request's body once its headers are in; then it is closed.",
)
@click.option(
    "--keep-alive-timeout",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Seconds an idle keep-alive connection stays open.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=1024,
    show_default=True,
    help="Open connections at once; one more is answered 503 (error JSON) and closed.",
)
@click.option(
    "--max-client-connections",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Open connections from one client address; more get 503 and are closed at once.",
)
@click.option(
    "--max-runs", type=click.IntRange(1), default=2, show_default=True, help="Runs executing at once."
)
@click.option(
    "--max-queued",
    type=click.IntRange(0),
    default=64,
    show_default=True,
    help="Runs waiting beyond those executing; more submissions get 429.",
)
@click.option(
    "--ray-address",
    metavar="URL",
    envvar="CATS_RAY_ADDRESS",
    show_envvar=True,
    help="Run Orders on this Ray cluster (default: embedded local Ray).",
)
@click.option(
    "--operator-token",
    metavar="TOKEN",
    envvar="CATS_NODE_TOKEN",
    show_envvar=True,
    help="Also accept this bearer token, for the organization 'operator' (stored hashed; pass it "
    "through the environment, as the CatNode Deployment does, so it never shows in ps).",
)
@click.option(
    "--verify-reads/--no-verify-reads",
    default=True,
    show_default=True,
    help="Re-hash every block before the gateway serves it, so this node never passes on a "
    "corrupt block (clients verify every block anyway; turning it off saves one sha256 pass).",
)
@click.option(
    "--sandbox",
    type=click.Choice(["auto", "bwrap", "uid", "none"]),
    default="auto",
    show_default=True,
    help="How Orders' tasks are confined: bwrap (namespaces); auto is bwrap where it works, else "
    "the node refuses other organizations' Orders; uid (a task uid only, weaker) and none "
    "(no confinement: trusted single-user use) are named weaker modes. See docs/security.md.",
)
@click.option(
    "--task-limits",
    metavar="NAME=VALUE,...",
    default="",
    help="Per-task limits over the defaults, e.g. memory_bytes=512M,cpu_seconds=60 (names: cpu_seconds, "
    "memory_bytes, processes, open_files, output_bytes, output_files, input_bytes, tmp_bytes, wall_seconds).",
)
@click.option(
    "--allow-network/--no-allow-network",
    default=False,
    show_default=True,
    help="Run Functions that declare network: true (with network); refused by default.",
)
@click.option(
    "--allow-gateway",
    "gateways",
    multiple=True,
    metavar="URL",
    help="A gateway any organization may name in 'from' (besides those registered for it with "
    "`cats node token gateway`). Repeatable. Loopback/private addresses only as IP literals.",
)
@click.option(
    "--fetch-deadline",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    help="Seconds one Order fetched from a submitter's gateway may take in all; then its run fails.",
)
@click.option(
    "--fetch-workers",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="Orders fetched from submitters' gateways at once (threads of their own, not the request threads).",
)
@click.option(
    "--fetches-per-org",
    type=click.IntRange(1, 256),
    default=2,
    show_default=True,
    help="Of those, at most this many for one organization; its other Orders wait their turn.",
)
@click.option("--access-log", is_flag=True, help="Log every request (off by default: it costs throughput).")
def serve(
    host: str,
    port: int,
    port_file: Path | None,
    token_file: Path | None,
    allow_file: Path | None,
    max_car_mib: int,
    max_json_kib: int,
    max_car_response_mib: int,
    header_timeout: float,
    body_timeout: float,
    keep_alive_timeout: int,
    max_connections: int,
    max_client_connections: int,
    max_runs: int,
    max_queued: int,
    ray_address: str | None,
    verify_reads: bool,
    access_log: bool,
    operator_token: str | None,
    sandbox: str,
    task_limits: str,
    allow_network: bool,
    gateways: tuple[str, ...],
    fetch_deadline: float,
    fetch_workers: int,
    fetches_per_org: int,
) -> None:
    """Serve this home as a CAT Node until interrupted (Ctrl-C or SIGTERM stops it cleanly)."""
    import json

    import uvicorn

    home = state().home.absolute()
    allowed_gateways = [_gateway_arg(url).url for url in gateways]  # a usage error: before binding
    # Every way start-up can fail happens before the announcement: the socket is bound first (a
    # port in use is one line, exit 10, and leaves the home untouched), then the app is built,
    # which opens the home and takes its one-node lock (a home another node serves: exit 10).
    sock = _listen(host, port)
    port = int(sock.getsockname()[1])  # the one bound, also when --port 0 let the system choose
    try:
        identity = _identity(home)
        if operator_token:
            tokens = _tokens(token_file, home)
            tokens.register("operator", operator_token)
        config = {
            "home": str(home),
            "limits": {
                "max_car_bytes": max_car_mib * MiB,
                "max_json_bytes": max_json_kib * 1024,
                "max_concurrent_runs": max_runs,
                "max_queued_runs": max_queued,
                "max_car_response_bytes": max_car_response_mib * MiB,
                "header_timeout": header_timeout,
                "body_timeout": body_timeout,
                "keep_alive_timeout": keep_alive_timeout,
                "max_connections": max_connections,
                "max_client_connections": max_client_connections,
            },
            "allow_file": None if allow_file is None else str(allow_file.absolute()),
            "tokens_file": None if token_file is None else str(token_file.absolute()),
            "ray_address": ray_address,
            "public_url": f"http://{host}:{port}",
            "verify_reads": verify_reads,
            "sandbox": {
                "mode": sandbox,
                "limits": dataclasses.asdict(TaskLimits.parse(task_limits)),
                "allow_network": allow_network,
            },
            "fetch": {
                "deadline_s": fetch_deadline,
                "workers": fetch_workers,
                "per_org": fetches_per_org,
            },
            "gateways": allowed_gateways,
        }
        os.environ[_CONFIG_ENV] = json.dumps(config)
        server_config = uvicorn.Config(
            _SERVICE_FACTORY,
            factory=True,
            host=host,
            port=port,
            log_level="warning",
            access_log=access_log,
            timeout_graceful_shutdown=5,
            server_header=False,
            http=_SERVICE_PROTOCOL,  # uvicorn's httptools protocol with header/body deadlines
            timeout_keep_alive=keep_alive_timeout,
            # No limit_concurrency: its 503 is plain text. The protocol enforces max_connections
            # (from the configuration above) and answers with the node's error JSON.
        )
        server_config.load()  # calls the factory: opens the home, takes its node lock
    except BaseException:
        sock.close()
        raise
    click.echo(
        f"CAT Node {identity.did}\nserving {home} at http://{host}:{port} (OpenAPI: /openapi.json)", err=True
    )
    if port_file is not None:
        _write_port_file(port_file, port)
    # A serving node's warnings (runs settled at start, peers skipped) are its log: show them.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("cats_runtime").addHandler(handler)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the handler that
    # was in place before it started, so that the process dies of it (exit -15). A stop that
    # the node carried out cleanly is a success: with a no-op handler in place, the server's run
    # returns and the command exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.Server(server_config).run(sockets=[sock])


def _write_port_file(path: Path, port: int) -> None:
    """Write ``port`` to ``path`` whole or not at all, so a reader never sees half a number."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(f"{port}\n")
    os.replace(partial, path)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises:
        AddressInUseError: Something listens there already, or the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn binds: SO_REUSEADDR lets a restarted node reuse a port in TIME_WAIT, and
        # still fails while another process listens on it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        found = "it in use" if exc.errno == errno.EADDRINUSE else f"it unusable: {exc.strerror or exc}"
        raise AddressInUseError(
            f"expected to listen on {host}:{port}, found {found} (choose another --port or stop that process)"
        ) from None
    return sock


@node.command("id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def node_id(as_json: bool) -> None:
    """Print this node's did:key (created with its Ed25519 key on first use)."""
    identity = _identity(state().home)
    emit(as_json, {"did": identity.did, "key_file": identity.path}, identity.did)


_token_file_option = click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Hashed tokens file (default <home>/node/tokens.json).",
)


def _tokens(token_file: Path | None, home: Path | None = None) -> TokenStore:
    return TokenStore(token_file) if token_file else TokenStore.for_home(home or state().home)


@node.group("token")
def token() -> None:
    """Bearer tokens of the organizations allowed to submit Orders (stored hashed)."""


_gateway_option = click.option(
    "--gateway",
    "gateways",
    multiple=True,
    metavar="URL",
    help="A gateway this node may fetch from when ORG submits an Order with 'from' (repeatable).",
)
_private_option = click.option(
    "--allow-private",
    is_flag=True,
    help="The --gateway host names may resolve to loopback, private or link-local addresses "
    "(an IP literal such as http://127.0.0.1:8700 needs no flag: naming it is explicit).",
)


def _gateway_arg(url: str) -> Destination:
    try:
        return Destination.parse(url, plain=True)
    except InvalidInputError as exc:
        raise click.BadParameter(str(exc)) from None


@token.command("add")
@click.argument("org")
@_gateway_option
@_private_option
@_token_file_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def token_add(
    org: str, gateways: tuple[str, ...], allow_private: bool, token_file: Path | None, as_json: bool
) -> None:
    """Create a token for ORG and print it once (only its hash is kept)."""
    store = _tokens(token_file)
    value = store.issue(org, gateways=gateways, allow_private=allow_private)
    registered = [g.url for _, g in store.gateways(org)]
    emit(as_json, {"org": org, "token": value, "gateways": registered}, value)


@token.command("gateway")
@click.argument("org")
@click.argument("urls", nargs=-1, metavar="[URL]...")
@_private_option
@click.option("--remove", is_flag=True, help="Forget these gateways of ORG instead.")
@_token_file_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def token_gateway(
    org: str, urls: tuple[str, ...], allow_private: bool, remove: bool, token_file: Path | None, as_json: bool
) -> None:
    """Register gateways ORG may name in 'from' (no URL: list them); the node fetches from no other."""
    store = _tokens(token_file)
    for url in urls:
        if remove:
            store.remove_gateway(org, url)
        else:
            store.add_gateway(org, url, allow_private=allow_private)
    listed = [{"url": g.url, "private": g.allow_private} for _, g in store.gateways(org)]
    text = "\n".join(f"{g['url']}{'  (private addresses allowed)' if g['private'] else ''}" for g in listed)
    emit(as_json, listed, text)


@token.command("rm")
@click.argument("org")
@_token_file_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def token_rm(org: str, token_file: Path | None, as_json: bool) -> None:
    """Revoke every token of ORG."""
    store = _tokens(token_file)
    removed = store.revoke(org)
    emit(as_json, {"org": org, "revoked": removed}, f"revoked {removed} token(s) of {org}")


@token.command("ls")
@_token_file_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def token_ls(token_file: Path | None, as_json: bool) -> None:
    """List the organizations holding tokens."""
    store = _tokens(token_file)
    orgs = store.orgs()
    gateways: dict[str, list[str]] = {}
    for org, gateway in store.gateways():
        gateways.setdefault(org, []).append(gateway.url)
    lines = [" ".join([org, *gateways.get(org, [])]) for org in orgs]
    emit(as_json, orgs, "\n".join(lines))


@node.command("allow")
@click.argument("entries", nargs=-1)
@click.option(
    "--function",
    "functions",
    multiple=True,
    metavar="DIR:module:callable",
    help="Allow this Function: hashed as `cats run` hashes it (with --mode), its record's CID is listed.",
)
@click.option(
    "--mode",
    type=click.Choice(["batch", "map"]),
    default="batch",
    show_default=True,
    help="Mode of the --function entries (part of the Function CID).",
)
@click.option(
    "--code-any-entrypoint",
    "codes",
    multiple=True,
    metavar="CODE_CID",
    help="Allow ANY entrypoint and mode over this code directory (wider than a Function; explicit).",
)
@click.option(
    "--allow",
    "allow_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Allow-list file (default <home>/node/allow.txt).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def allow(
    entries: tuple[str, ...],
    functions: tuple[str, ...],
    mode: str,
    codes: tuple[str, ...],
    allow_file: Path | None,
    as_json: bool,
) -> None:
    """Allow Functions by CID, or trust a did:key to endorse them; no arguments lists the file.

    An ENTRY is a Function CID, `code:<code CID>` (any entrypoint of that code, as
    --code-any-entrypoint) or a did:key. A bare code CID is refused: it would allow every
    entrypoint of the code without saying so.
    """
    rules = AllowList(allow_file) if allow_file else AllowList.for_home(state().home)
    for spec in functions:
        _, function = build_function(spec, None, mode=mode)  # type: ignore[arg-type]
        rules.add(str(function))
    for code in codes:
        rules.add(f"code:{cid_arg(code)}")
    for entry in entries:
        rules.add(entry)
    listed = rules.entries()
    doc = {
        "functions": sorted(str(c) for c in rules.functions),
        "codes": sorted(str(c) for c in rules.codes),
        "signers": sorted(rules.signers),
    }
    emit(as_json, doc, "\n".join(listed))


@node.command("endorse")
@click.argument("cid")
@click.option(
    "--code-any-entrypoint",
    "any_entrypoint",
    is_flag=True,
    help="CID is a code directory: endorse every entrypoint over it (wider; explicit).",
)
def endorse(cid: str, any_entrypoint: bool) -> None:
    """Sign the Function CID with this node's key (send it as an X-Cats-Endorsement header)."""
    target = cid_arg(cid)
    if any_entrypoint:
        click.echo(str(endorse_code(_identity(state().home), target)))
    else:
        if target.codec != 0x71:
            raise InvalidInputError(
                f"expected a Function CID (dag-cbor record), found {target}; "
                "to endorse any entrypoint of code, pass --code-any-entrypoint"
            )
        click.echo(str(endorse_function(_identity(state().home), target)))


def _read_token(token_file: Path | None) -> str:
    if token_file is not None:
        value = token_file.read_text(encoding="utf-8").strip()
    else:
        value = os.environ.get("CATS_NODE_TOKEN", "").strip()
    if not value:
        raise InvalidInputError("expected a bearer token in --token-file or $CATS_NODE_TOKEN, found none")
    return value


@node.command("submit")
@click.option(
    "--to",
    "node_url",
    required=True,
    metavar="URL",
    help="The node to run the Order, e.g. http://127.0.0.1:8700.",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding your organization's token for that node (else $CATS_NODE_TOKEN).",
)
@click.option("--order", "order_cid", metavar="CID", help="Submit this stored Order instead of building one.")
@click.option(
    "--function", "function_spec", metavar="DIR:module:callable", help="Code directory and entrypoint."
)
@click.option(
    "--mode",
    type=click.Choice(["batch", "map"]),
    default="batch",
    show_default=True,
    help="batch: one call gets all inputs; map: one call per top-level entry of the first input.",
)
@click.option("--input", "inputs", multiple=True, metavar="NAME=CID|PATH", help="A named input. Repeatable.")
@click.option(
    "--param", "params", multiple=True, metavar="KEY=VALUE", help="A parameter (JSON or string). Repeatable."
)
@click.option(
    "--params-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON object of parameters (--param values override it).",
)
@click.option(
    "--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="Seed of the run."
)
@click.option(
    "--endorsement",
    "endorsements",
    multiple=True,
    metavar="DID.SIG",
    help="An endorsement of the Function (from `cats node endorse`). Repeatable.",
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the run settles.")
@click.option(
    "--timeout", type=click.FloatRange(1), default=600.0, show_default=True, help="Seconds to wait."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def submit(
    node_url: str,
    token_file: Path | None,
    order_cid: str | None,
    function_spec: str | None,
    mode: str,
    inputs: tuple[str, ...],
    params: tuple[str, ...],
    params_file: Path | None,
    seed: int,
    endorsements: tuple[str, ...],
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Send an Order (with every block it needs, as a CAR) to a node and follow its run."""
    bearer = _read_token(token_file)
    home = state().home
    if (order_cid is None) == (function_spec is None):
        raise InvalidInputError(
            "expected either --order CID or --function DIR:module:callable, found "
            + ("both" if order_cid else "neither")
        )
    if order_cid is not None:
        order = cid_arg(order_cid)
    else:
        assert function_spec is not None
        values: dict[str, Any] = load_params_file(params_file) if params_file else {}
        values.update(parse_param(p) for p in params)
        with Node.open(home) as local:
            parsed = [import_input(local, text) for text in inputs]
            _, function = build_function(function_spec, local.store, mode=mode)  # type: ignore[arg-type]
            structure = store_structure(local_structure(), local.store)
            imports = {p.name: p.imported for p in parsed if p.imported is not None}
            named = {p.name: p.cid for p in parsed}
            _, order = make_order(local, function, named, values, seed, structure, imports)
    answer = submit_order(home, order, node_url, bearer, endorsements=endorsements)
    if wait:
        answer = wait_for_run(node_url, str(answer["run"]), timeout=timeout)
    text = "\n".join(
        f"{k:8} {answer.get(k)}"
        for k in ("run", "status", "order", "bom", "output", "error")
        if answer.get(k) is not None
    )
    emit(as_json, answer, text)
    if answer.get("status") == "failed":
        raise FunctionFailedError(f"run {answer['run']} failed: {answer.get('error')}")


@cli.command("fetch")
@click.argument("cid")
@click.option(
    "--from",
    "peers",
    multiple=True,
    required=True,
    metavar="URL",
    help="A peer's gateway (http://host:port); repeat to try several in order.",
)
@click.option(
    "--kubo", metavar="URL", help="Kubo RPC API to ask after the peers (e.g. http://127.0.0.1:5001)."
)
@click.option(
    "--parallelism",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Concurrent block requests when fetching block by block.",
)
@click.option(
    "--pin/--no-pin", default=True, show_default=True, help="Pin the root once its DAG is complete."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def fetch(
    cid: str, peers: tuple[str, ...], kubo: str | None, parallelism: int, pin: bool, as_json: bool
) -> None:
    """Fetch the whole DAG under CID from peers' gateways, verifying every block."""
    report = fetch_from_peers(
        state().home, cid_arg(cid), list(peers), kubo=kubo, parallelism=parallelism, pin=pin
    )
    mib = report.fetched_bytes / MiB
    rate = f", {mib / report.seconds:.1f} MiB/s" if report.seconds > 0 and report.fetched else ""
    lines = [
        f"{report.root}: {report.blocks} blocks, {report.bytes} bytes; fetched {report.fetched} blocks "
        f"({mib:.1f} MiB) via {report.via} in {report.seconds:.2f}s{rate}"
    ]
    lines += [f"skipped {f.source}: {f.error}" for f in report.failures]
    emit(as_json, report.to_json(), "\n".join(lines))
    if report.failures and not as_json:
        print(f"warning: {len(report.failures)} peer failure(s), see above", file=sys.stderr)
