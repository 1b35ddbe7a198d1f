"""IaC tests run under Pulumi's mocks: no CLI, no cloud, no cluster.

The mocks are installed here, once, before any test module imports project code: components read
the runtime settings when they register resources, and ``preview=False`` makes ``apply`` callbacks
run (with ``preview=True`` unknown outputs would skip them and the tests would pass vacuously).
"""

from __future__ import annotations

import pulumi
from iac_harness import MOCKS

pulumi.runtime.set_mocks(MOCKS, project="cats-node", stack="test", preview=False)
