"""Refresh requirements.lock: the Pulumi program's Python dependencies, pinned with hashes.

The input is the ``iac`` extra of pyproject.toml plus PyYAML (``__main__.py`` imports it); each
Pulumi SDK is constrained to the version installed here, because the Structure build refuses a
lock that disagrees with the SDKs (hence provider plugins) a deployment would run with. Resolves
metadata only (`uv pip compile`), for CPython 3.11 on linux x86_64, the Plant's image platform::

    make lock-iac        # or: .venv/bin/python scripts/lock_iac.py [--check]

``--check`` exits 1 when the committed lock differs from a fresh resolution.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cats_runtime.operations._structure import IAC_LOCK, plugin_pins  # noqa: E402 - after sys.path

COMMAND = "make lock-iac"


def _inputs() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    yaml_dep = [d for d in project["dependencies"] if d.lower().startswith("pyyaml")]
    return [*project["optional-dependencies"]["iac"], *yaml_dep]


def _compile(output: Path) -> None:
    pins = plugin_pins()
    missing = [name for name, version in pins.items() if version is None]
    if missing:
        sys.exit(f"lock_iac: expected the iac extra installed (pip install -e '.[iac]'), missing {missing}")
    uv = Path(sys.executable).with_name("uv")
    with tempfile.TemporaryDirectory(prefix="cats-lock-") as tmp:
        source = Path(tmp) / "iac.in"
        source.write_text("\n".join(_inputs()) + "\n", encoding="utf-8")
        constraints = Path(tmp) / "installed.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())), encoding="utf-8")
        subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                str(uv) if uv.exists() else "uv",
                "pip",
                "compile",
                str(source),
                "--constraint",
                str(constraints),
                "--generate-hashes",
                "--no-annotate",  # annotations would name the temporary input files
                "--python-version",
                "3.11",
                "--python-platform",
                "x86_64-unknown-linux-gnu",
                "--custom-compile-command",
                COMMAND,
                "--quiet",
                "--output-file",
                str(output),
            ],
            check=True,
        )


def main() -> None:
    """Write (or with ``--check`` compare) the lock at the repository root."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Fail when the committed lock is stale.")
    args = parser.parse_args()
    target = ROOT / IAC_LOCK
    if not args.check:
        _compile(target)
        return
    with tempfile.TemporaryDirectory(prefix="cats-lock-") as tmp:
        fresh = Path(tmp) / IAC_LOCK
        _compile(fresh)
        if fresh.read_text(encoding="utf-8") != target.read_text(encoding="utf-8"):
            sys.exit(f"lock_iac: {IAC_LOCK} is stale; run `{COMMAND}`")


if __name__ == "__main__":
    main()
