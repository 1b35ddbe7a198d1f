"""Execution layer: run Functions on Ray, with code and data materialized from the CAS."""

from __future__ import annotations

from ._context import Context, Datum
from ._environment import (
    BuiltEnvironment,
    EnvRun,
    build_environment,
    check_compatible,
    clear_environment_cache,
    distributions_digest,
    environment_cache_dir,
    load_environment,
    run_in_environment,
    uv_binary,
)
from ._extras import EXTRAS, require_extra
from ._jobs import JobsExecutor, auth_token
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
    ensure_ray,
    open_source,
    ray_version,
    run_locally,
)
from ._task import DatumRef, TaskResult, TaskSpec, run_task

__all__ = [
    "ENTRYPOINT_RE",
    "EXTRAS",
    "MAX_RETRIES",
    "BuiltEnvironment",
    "EnvRun",
    "Context",
    "Datum",
    "DatumRef",
    "Executor",
    "JobsExecutor",
    "RayExecutor",
    "SourceDesc",
    "TaskOutcome",
    "TaskResult",
    "TaskSpec",
    "accept_result",
    "auth_token",
    "build_environment",
    "check_compatible",
    "clear_environment_cache",
    "distributions_digest",
    "environment_cache_dir",
    "load_environment",
    "code_cache_dir",
    "ensure_ray",
    "load_entrypoint",
    "make_read_only",
    "make_writable",
    "materialize",
    "materialize_code",
    "open_source",
    "ray_version",
    "remove_tree",
    "require_extra",
    "run_in_environment",
    "run_locally",
    "run_task",
    "uv_binary",
]
