"""The HTTP service of a CAT Node: Orders, records, catalog and an IPFS trustless gateway.

Start it with ``cats node serve``; build the ASGI app directly with :func:`create_app`.
"""

from __future__ import annotations

from ._app import CONFIG_ENV, app_from_environment, config_from_json, config_to_json, create_app
from ._errors import STATUS_CODES, NotAcceptableError, status_for
from ._gateway_routes import CAR_MEDIA_TYPE, RAW_MEDIA_TYPE
from ._limits import Limits
from ._runs import RunInfo, RunResult
from ._server import PROTOCOL, GuardedProtocol
from ._state import NodeConfig

__all__ = [
    "CAR_MEDIA_TYPE",
    "CONFIG_ENV",
    "PROTOCOL",
    "RAW_MEDIA_TYPE",
    "STATUS_CODES",
    "GuardedProtocol",
    "Limits",
    "NodeConfig",
    "NotAcceptableError",
    "RunInfo",
    "RunResult",
    "app_from_environment",
    "config_from_json",
    "config_to_json",
    "create_app",
    "status_for",
]
