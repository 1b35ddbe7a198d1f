"""Error text from peers and records reaches a terminal as one printable line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cats_runtime.cli._main import _one_line


def test_control_characters_are_shown_not_sent() -> None:
    hostile = "HTTP 400: \x1b]0;pwned\x07\rrun succeeded\nsecond line\x9b2J"
    line = _one_line(hostile)
    assert "\x1b" not in line and "\x07" not in line and "\r" not in line and "\n" not in line
    assert "\x9b" not in line
    assert line == "HTTP 400: \\x1b]0;pwned\\x07\\x0drun succeeded\\x0asecond line\\x9b2J"


def test_cli_error_with_escape_in_argument_is_one_clean_line(tmp_path) -> None:
    # A malformed CID echoed back in the message: the escape the user (or a script fed by a peer)
    # passed must not reach the terminal raw.
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("cats")), "--home", str(tmp_path / "h"), "show", "bafy\x1b[2Jx"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "\x1b" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
