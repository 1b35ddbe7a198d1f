"""What one running node holds: its home, repository, identity, access rules, limits and runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request

from ..cas import PackedBlockStore, Repo
from ..execution import SandboxPolicy
from ..operations import AllowList, NodeIdentity, TokenStore
from ..records import Catalog
from ._fetches import FetchLimits, FetchPool
from ._limits import Limits

if TYPE_CHECKING:
    from ._runs import RunManager

__all__ = ["NodeConfig", "NodeState", "node_state"]


@dataclass(frozen=True)
class NodeConfig:
    """How to run a node.

    Attributes:
        home: The node's CATs home (blocks, pins, catalog, keys, ``node/``).
        limits: Body sizes and run concurrency.
        allow_file: The allow-list file (default ``<home>/node/allow.txt``).
        tokens_file: The hashed tokens file (default ``<home>/node/tokens.json``).
        ray_address: A ``ray://`` cluster to run on (None: embedded local Ray).
        public_url: How peers reach this node (shown in run records and on the index page).
        verify_reads: Re-hash every block the gateway serves (clients verify anyway).
        sandbox: How Orders' tasks are confined, their limits, and whether networked Functions
            run (a node refuses them by default).
        fetch: Deadline and concurrency of fetching Orders for submitters (``"from"``).
        gateways: Node-wide gateway URLs any organization may name in ``"from"`` (besides the
            gateways registered for it with its token).
    """

    home: Path
    limits: Limits = field(default_factory=Limits)
    allow_file: Path | None = None
    tokens_file: Path | None = None
    ray_address: str | None = None
    public_url: str | None = None
    verify_reads: bool = True
    sandbox: SandboxPolicy = field(default_factory=lambda: SandboxPolicy(allow_network=False))
    fetch: FetchLimits = field(default_factory=FetchLimits)
    gateways: tuple[str, ...] = ()


@dataclass
class NodeState:
    """The live objects behind the routes (one per app)."""

    config: NodeConfig
    repo: Repo
    identity: NodeIdentity
    tokens: TokenStore
    allow: AllowList
    runs: RunManager
    catalog: Catalog
    fetches: FetchPool = field(init=False)

    @property
    def home(self) -> Path:
        """The node's home."""
        return self.config.home

    @property
    def blocks(self) -> PackedBlockStore:
        """The node's block store."""
        return self.repo.blocks


def node_state(request: Request) -> NodeState:
    """The state of the node serving ``request``."""
    state = request.app.state.node
    assert isinstance(state, NodeState)
    return state
