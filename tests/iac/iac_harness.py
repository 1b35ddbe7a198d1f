"""Shared helpers of the IaC tests: the recording mocks and a runner for mocked programs.

``conftest.py`` installs :data:`MOCKS` into the Pulumi runtime before any project code is imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from policies.offline import RecordingMocks, RegisteredResource  # noqa: E402

MOCKS = RecordingMocks()
# CI has ../shared beside the checkout; CATS_SHARED_DIR points elsewhere (a worktree's own layout).
SHARED_SCHEMAS = (
    Path(os.environ.get("CATS_SHARED_DIR") or REPO.parent / "shared") / "schemas" / "kuberay-v1.7.0"
)


class Built:
    """The resources one mocked program registered, with lookups by type and name."""

    def __init__(self, resources: list[RegisteredResource], outputs: dict[str, Any]) -> None:
        self.resources = resources
        self.outputs = outputs

    def of_type(self, type_: str) -> list[RegisteredResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> RegisteredResource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def types(self) -> set[str]:
        return {r.type for r in self.resources}


def build(program: Callable[[], dict[str, pulumi.Output[Any]]]) -> Built:
    """Run ``program`` under the mocks and return what it registered and its resolved outputs."""
    MOCKS.reset()
    outputs: dict[str, Any] = {}

    def run() -> pulumi.Output[Any]:
        declared = program()

        def keep(values: list[Any]) -> None:
            outputs.update(zip(declared, values, strict=True))

        return pulumi.Output.all(*declared.values()).apply(keep)

    pulumi.runtime.test(run)()
    return Built(list(MOCKS.resources), outputs)
