"""Fixtures of the node service tests: real ``cats node serve`` processes on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mesh"))
