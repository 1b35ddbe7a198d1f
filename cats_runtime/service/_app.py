"""The ASGI application of a CAT Node, and how ``cats node serve`` builds it.

``create_app(config)`` returns a FastAPI app whose lifespan opens the node's home (repository,
catalog, identity, access rules), takes the one-node-per-home lock, settles runs a previous
process left unfinished and starts the run workers. ``app_from_environment()`` is the factory
uvicorn imports by name (``cats_runtime.service:app_from_environment``); it reads the
configuration from ``$CATS_NODE_CONFIG`` (JSON), which ``cats node serve`` sets, and opens the
home at once: ``cats node serve`` builds the app before it announces anything, so a home that
another node serves is one line and exit 10, not a traceback after "serving". Starting
uvicorn by import string keeps the CLI from importing the service layer: both are interfaces.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..cas import Repo
from ..errors import CatsError, InvalidInputError
from ..execution import LocalRay, SandboxPolicy, TaskLimits, bind_local_ray_to_this_process
from ..operations import AllowList, NodeIdentity, TokenStore
from ..records import CATALOG_FILE, Catalog
from . import _gateway_routes, _orders, _records_routes, _ui
from ._errors import cats_error_handler, http_error_handler, validation_error_handler
from ._fetches import FetchLimits, FetchPool
from ._limits import Limits
from ._runs import RunManager, RunStore, hold_node_lock
from ._state import NodeConfig, NodeState

__all__ = ["CONFIG_ENV", "app_from_environment", "config_from_json", "config_to_json", "create_app"]

log = logging.getLogger(__name__)

CONFIG_ENV: Final = "CATS_NODE_CONFIG"
"""The environment variable ``cats node serve`` passes the configuration in (JSON)."""

_SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)

DESCRIPTION: Final = """One organization's CAT Node.

* **Orders** (`POST /orders`, bearer token): submit an Order with its blocks as a CAR, or by CID
  with a gateway to fetch it from. The Function must be on the node's allow-list (or endorsed by
  a trusted did:key). Poll `GET /orders/{id}`.
* **Records**: `GET /boms/{cid}`, `GET /invoices/{cid}`, `GET /catalog?input=&output=&function=&order=`.
* **Trustless gateway**: `GET /ipfs/{cid}` with `Accept: application/vnd.ipld.raw` or
  `application/vnd.ipld.car` (or `?format=raw|car`), so any IPFS tool can fetch from this node.
  There is no write endpoint for blocks: they arrive only with authenticated Orders.
"""


class SecurityHeaders:
    """Adds ``nosniff`` and friends to every response, errors and streams included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _open_state(config: NodeConfig, stack: ExitStack) -> NodeState:
    home = config.home
    repo = Repo.open(home)  # first: a fresh home must become a repository before other files appear
    stack.enter_context(hold_node_lock(home))
    identity = NodeIdentity.load_or_create(home)
    catalog = Catalog(home / CATALOG_FILE)
    stack.callback(catalog.close)
    tokens = TokenStore(config.tokens_file) if config.tokens_file else TokenStore.for_home(home)
    allow = AllowList(config.allow_file) if config.allow_file else AllowList.for_home(home)
    store = RunStore(home / "node" / "runs.sqlite")
    stack.callback(store.close)
    state = NodeState(config, repo, identity, tokens, allow, None, catalog)  # type: ignore[arg-type]
    limits = config.limits
    state.runs = RunManager(
        store,
        _orders.execute_run(state),
        max_concurrent=limits.max_concurrent_runs,
        max_queued=limits.max_queued_runs,
    )
    state.fetches = FetchPool(config.fetch.workers, config.fetch.per_org)
    stack.callback(state.fetches.stop)
    for run in state.runs.recover(_orders.settle_from_catalog(state)):
        log.warning(
            "run %s of Order %s settled at start as %s: %s",
            run.id,
            run.order,
            run.status,
            run.error or run.bom,
        )
    _own_local_ray(config, stack)
    state.runs.start()
    stack.callback(state.runs.stop)
    return state


def _sandbox_policy(doc: dict[str, Any]) -> SandboxPolicy:
    return SandboxPolicy(
        mode=str(doc.get("mode", "auto")),
        limits=TaskLimits(**doc.get("limits", {})),
        allow_network=bool(doc.get("allow_network", False)),
    )


def _own_local_ray(config: NodeConfig, stack: ExitStack) -> None:
    """The local Ray this node starts is its own: cleaned up at start, stopped with the node.

    A node that died (kill -9) may have left a Ray behind; its leftovers are removed now, before
    the first Order starts a new one. The Ray is bound to this process, so it also goes away by
    itself if this node is killed. The stop runs after the run manager's (the exit stack unwinds
    in reverse), once no run is using it. Ray never runs inside the node process, so a SIGTERM
    of the node meets no Ray signal handler (no crash dump) and stops cleanly.
    """
    if config.ray_address is not None:
        return
    local = LocalRay(config.home)
    local.clean_stale()
    bind_local_ray_to_this_process(config.home)
    stack.callback(local.stop_if_owned)


def create_app(config: NodeConfig) -> FastAPI:
    """The ASGI app of the node whose home and limits ``config`` gives.

    The home is opened (and its one-node lock taken) when the app starts, in its lifespan.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            app.state.node = _open_state(config, stack)
            log.info("CAT Node %s serving %s", app.state.node.identity.did, config.home)
            yield

    return _build_app(lifespan)


def _opened_app(config: NodeConfig) -> FastAPI:
    """An app whose home is opened now, before any socket is served.

    A home another node serves then fails here, as a :class:`StoreError` the CLI reports in one line.
    """
    stack = ExitStack()
    try:
        state = _open_state(config, stack)
    except BaseException:
        stack.close()
        raise

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with stack:
            app.state.node = state
            log.info("CAT Node %s serving %s", state.identity.did, config.home)
            yield

    return _build_app(lifespan)


def _build_app(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]]) -> FastAPI:
    app = FastAPI(
        title="CAT Node",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # the interactive docs load scripts from a CDN; the spec is at /openapi.json
        redoc_url=None,
    )
    app.add_exception_handler(CatsError, cats_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(SecurityHeaders)
    app.include_router(_gateway_routes.router)
    app.include_router(_orders.router)
    app.include_router(_records_routes.router)
    app.include_router(_ui.router)
    return app


def config_to_json(config: NodeConfig) -> str:
    """Serialize a configuration for :data:`CONFIG_ENV`."""
    limits = config.limits
    doc: dict[str, Any] = {
        "home": str(config.home),
        "limits": dataclasses.asdict(limits),
        "allow_file": None if config.allow_file is None else str(config.allow_file),
        "tokens_file": None if config.tokens_file is None else str(config.tokens_file),
        "ray_address": config.ray_address,
        "public_url": config.public_url,
        "verify_reads": config.verify_reads,
        "fetch": dataclasses.asdict(config.fetch),
        "gateways": list(config.gateways),
    }
    return json.dumps(doc)


def config_from_json(text: str) -> NodeConfig:
    """Parse :func:`config_to_json`'s output.

    Raises:
        InvalidInputError: The text is not such a configuration.
    """
    try:
        doc = json.loads(text)
        limits = Limits(**doc.get("limits", {}))
        return NodeConfig(
            home=Path(doc["home"]),
            limits=limits,
            allow_file=Path(doc["allow_file"]) if doc.get("allow_file") else None,
            tokens_file=Path(doc["tokens_file"]) if doc.get("tokens_file") else None,
            ray_address=doc.get("ray_address"),
            public_url=doc.get("public_url"),
            verify_reads=bool(doc.get("verify_reads", True)),
            sandbox=_sandbox_policy(doc.get("sandbox", {})),
            fetch=FetchLimits(**doc.get("fetch", {})),
            gateways=tuple(str(g) for g in doc.get("gateways", [])),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"expected a node configuration in ${CONFIG_ENV}: {exc}") from None


def app_from_environment() -> FastAPI:
    """The uvicorn factory: the app configured by ``$CATS_NODE_CONFIG``, its home already open.

    Raises:
        InvalidInputError: The variable is unset or not a configuration.
        StoreError: The home is not usable, or another node serves it.
    """
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise InvalidInputError(f"expected ${CONFIG_ENV} to hold the node configuration, found it unset")
    return _opened_app(config_from_json(text))
