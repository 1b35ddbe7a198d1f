"""Fixtures of the CLI tests: the pty runner (``terminal``) and real node processes (``nodeproc``)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "mesh")]
