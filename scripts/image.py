"""The Plant's Ray image (images/ray/Dockerfile): its lock, its base pin, its build, its digest in stacks.

Subcommands::

    python scripts/image.py lock [--check]         # images/ray/requirements.lock (hashed, uv)
    python scripts/image.py pin-base [--digest D]  # write the Ray base's digest into the Dockerfile
    python scripts/image.py build --image REPO [--stack ORG ...]   # docker buildx build --push
    python scripts/image.py set-digest REF --stack ORG [--stack ORG ...]

``build`` pushes (a digest exists only for a pushed image), reads the pushed manifest's digest
from buildx's metadata file and, with ``--stack``, writes ``cats:rayImage: REPO:TAG@sha256:...``
into ``stacks/Pulumi.ORG.yaml``. It refuses to build on the placeholder base digest. Every
subprocess runs with a fixed argv (no shell).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "images" / "ray" / "Dockerfile"
LOCK = ROOT / "images" / "ray" / "requirements.lock"
STACKS = ROOT / "stacks"
LOCK_COMMAND = "python scripts/image.py lock"

_BASE_RE = re.compile(
    r"^ARG RAY_BASE=(?P<repo>[^:@\s]+):(?P<tag>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$", re.M
)
_REF_RE = re.compile(r"^[a-z0-9.\-/:]+[a-z0-9]:[\w.\-]+@sha256:[0-9a-f]{64}$")
_KEY = "cats:rayImage"


class ImageError(Exception):
    """A refusal of this script: printed as one line, exit 1."""


def base() -> tuple[str, str, str]:
    """The Dockerfile's Ray base as ``(repository, tag, digest)``."""
    match = _BASE_RE.search(DOCKERFILE.read_text(encoding="utf-8"))
    if match is None:
        raise ImageError(f"expected `ARG RAY_BASE=<repo>:<tag>@sha256:<64 hex>` in {DOCKERFILE}, found none")
    return match["repo"], match["tag"], match["digest"]


def ray_version(tag: str) -> str:
    """The Ray version of a rayproject/ray tag (``2.52.0-py311`` -> ``2.52.0``)."""
    match = re.match(r"(\d+\.\d+\.\d+)", tag)
    if match is None:
        raise ImageError(f"expected a Ray base tag starting with a version, found {tag!r}")
    return match[1]


def is_placeholder(digest: str) -> bool:
    """True for the repeating digest the repository ships in place of a real one."""
    hexpart = digest.removeprefix("sha256:")
    return hexpart == hexpart[:16] * 4


def _inputs(version: str) -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    # Ray at the base's version: the lock then agrees with what the base image already holds.
    return [f"ray[default]=={version}" if d.startswith("ray") else d for d in deps]


def lock(output: Path) -> None:
    """Resolve the project's runtime dependencies for the base's Python and write them hashed."""
    _, tag, _ = base()
    py = re.search(r"-py3(\d+)", tag)
    uv = Path(sys.executable).with_name("uv")
    with tempfile.TemporaryDirectory(prefix="cats-image-lock-") as tmp:
        source = Path(tmp) / "image.in"
        source.write_text("\n".join(_inputs(ray_version(tag))) + "\n", encoding="utf-8")
        subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                str(uv) if uv.exists() else "uv",
                "pip",
                "compile",
                str(source),
                "--generate-hashes",
                "--no-annotate",
                "--python-version",
                f"3.{py[1] if py else '11'}",
                "--python-platform",
                "x86_64-unknown-linux-gnu",
                "--custom-compile-command",
                LOCK_COMMAND,
                "--quiet",
                "--output-file",
                str(output),
            ],
            check=True,
        )


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise ImageError("expected docker (with buildx) on PATH, found none")
    return docker


def pin_base(digest: str | None) -> str:
    """Write the base's digest into the Dockerfile (resolved with buildx when not given)."""
    repo, tag, old = base()
    if digest is None:
        out = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [_docker(), "buildx", "imagetools", "inspect", f"{repo}:{tag}", "--format", "{{json .Manifest}}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        digest = str(json.loads(out)["digest"])
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest) or is_placeholder(digest):
        raise ImageError(f"expected a real sha256 digest for {repo}:{tag}, found {digest!r}")
    text = DOCKERFILE.read_text(encoding="utf-8")
    DOCKERFILE.write_text(text.replace(f"{repo}:{tag}@{old}", f"{repo}:{tag}@{digest}"), encoding="utf-8")
    return f"{repo}:{tag}@{digest}"


def set_digest(ref: str, stack_files: list[Path]) -> None:
    """Set ``cats:rayImage`` to ``ref`` in each stack file, keeping every other line as it is."""
    if not _REF_RE.match(ref) or is_placeholder(ref.rsplit("@", 1)[1]):
        raise ImageError(f"expected REPO:TAG@sha256:<64 hex> of a built image, found {ref!r}")
    for path in stack_files:
        if not path.is_file():
            raise ImageError(f"expected a stack file {path}, found none")
        lines = path.read_text(encoding="utf-8").splitlines()
        entry = f"  {_KEY}: {ref}"
        at = [i for i, line in enumerate(lines) if line.startswith(f"  {_KEY}:")]
        if at:
            lines[at[0]] = entry
        elif "config:" in lines:
            lines.insert(lines.index("config:") + 1, entry)
        else:
            raise ImageError(f"expected a top-level `config:` section in {path}, found none")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build(image: str, stack_files: list[Path]) -> str:
    """Build and push the image; returns ``IMAGE:TAG@sha256:...`` and writes it into the stacks."""
    _, tag, digest = base()
    if is_placeholder(digest):
        raise ImageError(
            f"the Ray base digest in {DOCKERFILE.relative_to(ROOT)} is the placeholder: run "
            "`python scripts/image.py pin-base` first"
        )
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    tagged = f"{image}:{version}-ray{ray_version(tag)}"
    with tempfile.TemporaryDirectory(prefix="cats-image-") as tmp:
        meta = Path(tmp) / "metadata.json"
        subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                *(_docker(), "buildx", "build", "--platform", "linux/amd64", "--file", str(DOCKERFILE)),
                *("--tag", tagged, "--push", "--metadata-file", str(meta), str(ROOT)),
            ],
            check=True,
        )
        pushed = str(json.loads(meta.read_text(encoding="utf-8"))["containerimage.digest"])
    ref = f"{tagged}@{pushed}"
    set_digest(ref, stack_files)
    return ref


def main(argv: list[str] | None = None) -> int:
    """Parse the subcommand and run it; a refusal is one line on stderr and exit 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_lock = sub.add_parser("lock", help="Write images/ray/requirements.lock.")
    p_lock.add_argument("--check", action="store_true", help="Fail when the committed lock is stale.")
    p_pin = sub.add_parser("pin-base", help="Write the Ray base's digest into the Dockerfile.")
    p_pin.add_argument("--digest", help="sha256:... (default: resolved with docker buildx imagetools)")
    p_build = sub.add_parser("build", help="Build and push; write the digest into --stack files.")
    p_build.add_argument("--image", required=True, help="Repository to push to, e.g. ghcr.io/acme/cats-ray")
    p_build.add_argument("--stack", action="append", default=[], help="Organization whose stack to update")
    p_set = sub.add_parser("set-digest", help="Write an image reference into stacks as cats:rayImage.")
    p_set.add_argument("ref", help="REPO:TAG@sha256:...")
    p_set.add_argument("--stack", action="append", required=True, help="Organization whose stack to update")
    args = parser.parse_args(argv)
    try:
        if args.command == "lock":
            if not args.check:
                lock(LOCK)
                return 0
            with tempfile.TemporaryDirectory(prefix="cats-image-lock-") as tmp:
                fresh = Path(tmp) / "requirements.lock"
                lock(fresh)
                if fresh.read_text(encoding="utf-8") != LOCK.read_text(encoding="utf-8"):
                    raise ImageError(f"{LOCK.relative_to(ROOT)} is stale: run `{LOCK_COMMAND}`")
        elif args.command == "pin-base":
            print(pin_base(args.digest))
        else:
            files = [STACKS / f"Pulumi.{org}.yaml" for org in args.stack]
            if args.command == "build":
                print(build(args.image, files))
            else:
                set_digest(args.ref, files)
                print(args.ref)
    except (ImageError, subprocess.CalledProcessError) as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
