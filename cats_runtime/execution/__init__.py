"""Execution layer: run Functions on Ray, with code and data materialized from the CAS."""

from __future__ import annotations

from ._context import Context, Datum
from ._jobs import JobsExecutor, auth_token
from ._materialize import (
    ENTRYPOINT_RE,
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
from ._sandbox import (
    SANDBOX_CHOICES,
    CallResult,
    SandboxCall,
    SandboxMode,
    SandboxPolicy,
    SandboxSettings,
    TaskLimits,
    bwrap_available,
    clean_workdir,
    resolve_mode,
    run_call,
)
from ._task import DatumRef, TaskResult, TaskSpec, run_task

__all__ = [
    "ENTRYPOINT_RE",
    "MAX_RETRIES",
    "SANDBOX_CHOICES",
    "CallResult",
    "Context",
    "Datum",
    "DatumRef",
    "Executor",
    "JobsExecutor",
    "RayExecutor",
    "SandboxCall",
    "SandboxMode",
    "SandboxPolicy",
    "SandboxSettings",
    "SourceDesc",
    "TaskOutcome",
    "TaskResult",
    "TaskLimits",
    "TaskSpec",
    "accept_result",
    "auth_token",
    "bwrap_available",
    "clean_workdir",
    "ensure_ray",
    "load_entrypoint",
    "make_read_only",
    "make_writable",
    "materialize",
    "materialize_code",
    "open_source",
    "ray_version",
    "remove_tree",
    "resolve_mode",
    "run_call",
    "run_locally",
    "run_task",
]
