"""The Plant's Ray image (images/ray/Dockerfile), checked statically: no docker daemon here."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "ray" / "Dockerfile"
sys.path.insert(0, str(ROOT / "scripts"))

import image  # noqa: E402 - scripts/ is not a package

_REAL = hashlib.sha256(b"a built image").hexdigest()
_OTHER = hashlib.sha256(b"a rebuilt image").hexdigest()
_DIGEST_REF = re.compile(r"^[^\s:@]+:[\w.\-]+@sha256:[0-9a-f]{64}$")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _resolved_froms() -> list[str]:
    args: dict[str, str] = {}
    froms = []
    for word, rest in _instructions():
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args.setdefault(name, value)
        if word == "FROM":
            ref = rest.split()[0]
            froms.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], ref))
    return froms


def test_every_base_is_pinned_by_digest_and_none_is_latest() -> None:
    froms = _resolved_froms()
    assert froms, "no FROM"
    for ref in froms:
        assert _DIGEST_REF.match(ref), ref
        assert ":latest" not in ref and not ref.split("@")[0].endswith("latest")
    assert "latest" not in DOCKERFILE.read_text(encoding="utf-8")


def test_final_user_is_not_root() -> None:
    users = [rest for word, rest in _instructions() if word == "USER"]
    assert users, "the image must name its user"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root") and user.isdigit()
    # The final stage's USER comes after its last FROM.
    words = [w for w, _ in _instructions()]
    last_from = max(i for i, w in enumerate(words) if w == "FROM")
    assert max(i for i, w in enumerate(words) if w == "USER") > last_from


def test_installs_the_hashed_lock_and_the_wheel_with_the_job_entrypoint() -> None:
    runs = " ".join(rest for word, rest in _instructions() if word == "RUN")
    assert "--require-hashes -r /tmp/cats-requirements.lock" in runs
    assert "import cats_runtime.execution.job" in runs  # the build fails without the entrypoint
    copies = [rest for word, rest in _instructions() if word == "COPY"]
    assert any(c.endswith("cats_runtime ./cats_runtime") for c in copies)
    assert any("images/ray/requirements.lock" in c for c in copies)
    assert (ROOT / "cats_runtime" / "execution" / "job.py").is_file()
    # What the job runs is the module the Jobs executor submits.
    jobs = (ROOT / "cats_runtime" / "execution" / "_jobs.py").read_text(encoding="utf-8")
    assert "-m cats_runtime.execution.job" in jobs


def test_lock_is_hashed_and_pins_ray_at_the_base_version() -> None:
    text = image.LOCK.read_text(encoding="utf-8")
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert len(entries) > 10
    for entry in entries:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]
    _, tag, _ = image.base()
    assert re.search(rf"^ray=={re.escape(image.ray_version(tag))} ", text, re.M)
    # Every runtime dependency of the project is in the lock.
    for dep in image._inputs(image.ray_version(tag)):
        name = re.split(r"[\[<>=!~ ]", dep, maxsplit=1)[0].lower().replace("_", "-")
        assert re.search(rf"^{re.escape(name)}==", text, re.M | re.I), name


def test_stacks_and_default_reference_the_built_image_by_digest() -> None:
    from components.kuberay import DEFAULT_RAY_IMAGE

    assert DEFAULT_RAY_IMAGE.startswith("ghcr.io/cats-project/cats-ray:")
    for path in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        line = next(x for x in path.read_text(encoding="utf-8").splitlines() if "cats:rayImage:" in x)
        ref = line.split(": ", 1)[1]
        assert _DIGEST_REF.match(ref) and ref.startswith("ghcr.io/cats-project/cats-ray:"), path.name


def test_set_digest_writes_the_stack_and_keeps_the_rest(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.t.yaml"
    original = "# comment kept\nconfig:\n  cats:cloud: existing\n  cats:example: true\n"
    stack.write_text(original, encoding="utf-8")
    ref = "ghcr.io/acme/cats-ray:0.1.0-ray2.52.0@sha256:" + _REAL
    image.set_digest(ref, [stack])
    assert stack.read_text(encoding="utf-8") == (
        f"# comment kept\nconfig:\n  cats:rayImage: {ref}\n  cats:cloud: existing\n  cats:example: true\n"
    )
    newer = ref.replace(_REAL, _OTHER)
    image.set_digest(newer, [stack])
    assert stack.read_text(encoding="utf-8").count("cats:rayImage") == 1 and newer in stack.read_text()


@pytest.mark.parametrize(
    "ref",
    [
        "ghcr.io/acme/cats-ray:latest",
        "ghcr.io/acme/cats-ray@sha256:" + _REAL,  # no tag: the stacks name version and digest
        "ghcr.io/acme/cats-ray:0.1.0@sha256:" + "0123456789abcdef" * 4,  # the placeholder
    ],
)
def test_set_digest_refuses_what_is_not_a_built_digest(tmp_path: Path, ref: str) -> None:
    stack = tmp_path / "Pulumi.t.yaml"
    stack.write_text("config:\n  cats:cloud: existing\n", encoding="utf-8")
    with pytest.raises(image.ImageError, match="expected REPO:TAG@sha256"):
        image.set_digest(ref, [stack])
    assert "rayImage" not in stack.read_text(encoding="utf-8")


def test_build_refuses_the_placeholder_base_in_one_line(tmp_path: Path) -> None:
    # The shipped Dockerfile's base digest is the placeholder until `pin-base` runs with network.
    _, _, digest = image.base()
    if not image.is_placeholder(digest):
        pytest.skip("the base digest has been pinned")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "image.py"), "build", "--image", "ghcr.io/acme/cats-ray"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "image: the Ray base digest in images/ray/Dockerfile is the placeholder: run "
        "`python scripts/image.py pin-base` first"
    ]


def test_make_image_needs_an_image_name() -> None:
    if shutil.which("make") is None:
        pytest.skip("no make")
    result = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "image"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0 and "set IMAGE=" in result.stdout + result.stderr
