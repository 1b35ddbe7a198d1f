"""The CAT Node policy pack: ``pulumi preview --policy-pack policies``.

Constructing :class:`PolicyPack` starts the analyzer's gRPC server and blocks, so it happens only
here; the rules themselves live in :mod:`policies.rules` and are imported by tests and
:mod:`policies.offline` without a server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

# The Pulumi CLI runs this file from inside the pack directory; make ``policies`` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies.rules import POLICIES

PolicyPack(
    name="cats-node",
    # Each rule carries its own level (mandatory or advisory); this is only the fallback.
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=list(POLICIES),
    description="Guard rails for CAT Node stacks (see docs/iac.md).",
)
