"""Execution layer: run Functions on Ray, with code and data materialized from the CAS."""

from __future__ import annotations

from ._context import Context, Datum
from ._jobs import JobsExecutor, auth_token
from ._local_ray import (
    DEFAULT_IDLE_TIMEOUT,
    IDLE_TIMEOUT_ENV,
    LocalRay,
    LocalRayExecutor,
    LocalRayInfo,
    bind_local_ray_to_this_process,
    idle_timeout_from_env,
)
from ._materialize import (
    ENTRYPOINT_RE,
    code_cache_dir,
    load_entrypoint,
    make_read_only,
    make_writable,
    materialize,
    materialize_code,
    remove_tree,
)
from ._ray import (
    MAX_RETRIES,
    Executor,
    RayExecutor,
    SourceDesc,
    TaskOutcome,
    accept_result,
    collect_outcomes,
    ensure_ray,
    loopback_ray_env,
    open_source,
    ray_version,
    run_locally,
)
from ._task import DatumRef, TaskResult, TaskSpec, run_task

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "ENTRYPOINT_RE",
    "IDLE_TIMEOUT_ENV",
    "MAX_RETRIES",
    "Context",
    "Datum",
    "DatumRef",
    "Executor",
    "JobsExecutor",
    "LocalRay",
    "LocalRayExecutor",
    "LocalRayInfo",
    "RayExecutor",
    "SourceDesc",
    "TaskOutcome",
    "TaskResult",
    "TaskSpec",
    "accept_result",
    "auth_token",
    "bind_local_ray_to_this_process",
    "code_cache_dir",
    "collect_outcomes",
    "ensure_ray",
    "idle_timeout_from_env",
    "load_entrypoint",
    "loopback_ray_env",
    "make_read_only",
    "make_writable",
    "materialize",
    "materialize_code",
    "open_source",
    "ray_version",
    "remove_tree",
    "run_locally",
    "run_task",
]
