"""Pinned requirements: parsing, refusal before anything runs, and `cats lock`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cats_runtime.errors import InvalidInputError
from cats_runtime.operations import Node, build_function, parse_requirements

H1 = "a" * 64
H2 = "b" * 64
CATS = str(Path(sys.executable).with_name("cats"))


def test_pinned_file_with_hashes_comments_continuations_and_markers() -> None:
    text = (
        "# a lock\n"
        f"Six==1.17.0 \\\n    --hash=sha256:{H1} \\\n    --hash=sha256:{H2}\n"
        "    # via -r loose.txt\n"
        f"attrs[tests]==26.1.0 --hash=sha256:{H1}  # trailing comment\n"
        f'colorama==0.4.6 ; sys_platform == "win32" --hash=sha256:{H2}\n'
        "\n"
    )
    pins = parse_requirements(text, "reqs.txt")
    assert [(p.name, p.version, p.hashes, p.extras, p.where) for p in pins] == [
        ("attrs", "26.1.0", (H1,), ("tests",), "reqs.txt:6"),
        ("six", "1.17.0", (H1, H2), (), "reqs.txt:2"),
    ]  # colorama's marker is false here: left out


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "six==1.17.0\nnumpy>=1.21\n",
            r"^reqs\.txt:2: expected a pinned requirement 'name==version', found 'numpy>=1\.21'",
        ),
        ("six==1.17.0\nnumpy\n", r"^reqs\.txt:2: expected a pinned requirement"),
        ("numpy==1.*\n", r"^reqs\.txt:1: expected a pinned requirement"),
        ("numpy==1.21,<2\n", r"^reqs\.txt:1: expected a pinned requirement"),
        (
            "this is not a requirements file !!\n",
            r"^reqs\.txt:1: expected a requirement 'name==version', found 'this is",
        ),
        ("# ok\n\n-e .\n", r"^reqs\.txt:3: .*found the option '-e'"),
        (
            "--index-url https://example.invalid/simple\nsix==1.17.0\n",
            r"^reqs\.txt:1: .*option '--index-url'",
        ),
        ("six==1.17.0 --no-binary :all:\n", r"^reqs\.txt:1: expected only '--hash=sha256:<hex>' options"),
        ("six==1.17.0 --hash=md5:abc\n", r"^reqs\.txt:1: expected --hash=sha256:<64 hex>"),
        ("six @ https://example.invalid/six.whl\n", r"^reqs\.txt:1: .*direct reference"),
        ("six==1.17.0\nSIX==1.17.0\n", r"^reqs\.txt:2: expected one pin per distribution, found 'six' again"),
        (f"six==1.17.0 --hash=sha256:{H1}\nattrs==26.1.0\n", r"^reqs\.txt:2: expected --hash pins on every"),
    ],
)
def test_bad_lines_are_refused_naming_the_line(text: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        parse_requirements(text, "reqs.txt")


@given(st.text(max_size=200))
def test_any_text_is_pins_or_one_invalid_input_error(text: str) -> None:
    message = ""
    try:
        pins = parse_requirements(text, "r.txt")
    except InvalidInputError as exc:
        message = str(exc)
    else:
        assert all(pin.name and pin.version and pin.where.startswith("r.txt:") for pin in pins)
    assert not message or (message.startswith("r.txt:") and "\n" not in message)


def test_build_function_refuses_unpinned_before_storing_anything(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "fn.py").write_text("def main(ctx):\n    pass\n")
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("numpy>=1.21\n")
    with Node.open(tmp_path / "home") as node:
        with pytest.raises(InvalidInputError, match=r"requirements\.txt:1: expected a pinned requirement"):
            build_function(f"{code}:fn:main", node.store, requirements=reqs)
        assert list(node.repo.blocks) == []  # not even the code was stored


def test_pyproject_with_dependencies_needs_a_lock(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "fn.py").write_text("def main(ctx):\n    pass\n")
    (code / "pyproject.toml").write_text('[project]\nname = "f"\nversion = "0"\ndependencies = ["six"]\n')
    with pytest.raises(InvalidInputError, match=r"expected a lock \(uv\.lock or pylock\.toml\)"):
        build_function(f"{code}:fn:main", None)


def _cli(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # In a pty, as a person runs it: no traceback, one line, the documented exit code.
    env = {**os.environ, "CATS_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = " ".join([CATS, *args])
    return subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_cli_run_with_bad_requirements_exits_2_naming_the_line(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "fn.py").write_text("def main(ctx):\n    (ctx.output / 'x').write_text('ran')\n")
    (tmp_path / "in.txt").write_text("x")
    (tmp_path / "bad.txt").write_text("six==1.17.0\nthis is not a requirements file !!\n")
    home = tmp_path / "home"
    proc = _cli(
        ["run", "--function", "code:fn:main", "--input", "doc=in.txt", "--requirements", "bad.txt"],
        home,
        tmp_path,
    )
    assert proc.returncode == 2, proc.stdout
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1 and "bad.txt:2: expected a requirement 'name==version'" in lines[0], proc.stdout
    assert "Traceback" not in proc.stdout
    with Node.open(home) as node:
        assert list(node.repo.blocks) == [] and len(node.repo.pins) == 0  # not even the input was added


def test_cli_lock_pins_with_hashes(tmp_path: Path) -> None:
    (tmp_path / "loose.txt").write_text("six>=1.16\n")
    proc = _cli(["lock", "loose.txt", "-o", "pinned.txt"], tmp_path / "home", tmp_path)
    assert proc.returncode == 0, proc.stdout
    pins = parse_requirements((tmp_path / "pinned.txt").read_text(), "pinned.txt")
    assert [p.name for p in pins] == ["six"] and pins[0].hashes
