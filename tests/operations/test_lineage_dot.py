"""DOT output quotes names from other organizations' records so they cannot add attributes."""

from __future__ import annotations

from cats_runtime.operations._lineage import _dot_str


def test_dot_string_cannot_close_the_quote() -> None:
    hostile = 'x", URL="javascript:alert(1)", label="innocent'
    quoted = _dot_str(hostile)
    assert quoted.startswith('"') and quoted.endswith('"')
    inner = quoted[1:-1]
    # every quote inside is escaped, so the string never ends early
    assert all(inner[i - 1] == "\\" for i, ch in enumerate(inner) if ch == '"')


def test_dot_string_escapes_backslash_and_newline() -> None:
    assert _dot_str("a\\b\nc") == '"a\\\\b\\nc"'
