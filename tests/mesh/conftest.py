"""Fixtures of the mesh tests: real node processes on loopback (helpers in ``nodeproc``), and the
js-ipfs RPC daemon of the Kubo-client tests (``tests/cas/jsipfs_daemon.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "cas")]
