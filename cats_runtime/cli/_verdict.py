"""How `cats verify` and `cats redeploy` print a re-execution's verdict."""

from __future__ import annotations

from typing import Any

from ..errors import FunctionFailedError, VerificationError
from ..operations import VerifyOutcome
from ._app import emit

__all__ = ["report_verification"]


def report_verification(
    outcome: VerifyOutcome, as_json: bool, fields: dict[str, Any] | None = None, heading: str | None = None
) -> None:
    """Print a re-execution's verdict (with extra JSON ``fields`` and a text ``heading``).

    Raises:
        FunctionFailedError: the re-execution itself failed (exit 1).
        VerificationError: the outputs differ (exit 4).
    """
    data: dict[str, Any] = {
        **(fields or {}),
        "verdict": outcome.verdict,
        "bom": outcome.bom,
        "verification": outcome.verification,
        "expected": outcome.expected,
        "found": outcome.found,
        "differences": outcome.differences,
        "invoice": outcome.invoice,
        "log": outcome.log,
        "error": outcome.error,
    }
    head = [heading] if heading else []
    if outcome.verdict == "match":
        lines = [*head, f"match: output {outcome.found} reproduced", f"verification {outcome.verification}"]
        emit(as_json, data, "\n".join(lines))
        return
    lines = [
        *head,
        f"{outcome.verdict}: expected {outcome.expected}, found {outcome.found}",
        *(f"  {d}" for d in outcome.differences),
        f"verification {outcome.verification}",
    ]
    emit(as_json, data, "\n".join(lines))
    if outcome.verdict == "error":
        raise FunctionFailedError(f"re-execution failed: {outcome.error} (see `cats log {outcome.invoice}`)")
    raise VerificationError(f"BOM {outcome.bom} did not reproduce: {len(outcome.differences)} path(s) differ")
