"""CATs: Content-Addressable Transformers.

Run data-processing work whose every ingredient (data, code, parameters, the Pulumi
program of the compute, outputs) is content-addressed, and record it as a BOM whose
CID is enough to re-provision, re-execute and verify it.
"""

from __future__ import annotations

from .errors import CatsError

__version__ = "0.1.0"

__all__ = ["CatsError", "__version__"]
