"""Commands that need an optional extra say in one line which one to install (a real `cats` process
in an environment where the IaC extra's modules cannot be imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CATS = str(Path(sys.executable).with_name("cats"))
HINT = "needs the IaC extra: pip install 'cats-runtime[iac]' (or make install)"


@pytest.fixture
def without_iac(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import Pulumi's SDKs, as after `make install-core`.

    A ``sitecustomize`` on PYTHONPATH puts a finder first on ``sys.meta_path`` that refuses them,
    so the subprocess (and any Python it starts) sees a runtime-only install.
    """
    hide = tmp_path / "hide-iac"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import sys

            class _Hide:
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in ("pulumi", "pulumi_policy"):
                        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                    return None

            sys.meta_path.insert(0, _Hide())
            """
        )
    )
    return {**os.environ, "PYTHONPATH": f"{hide}{os.pathsep}{REPO_ROOT}"}


def test_the_hiding_environment_really_hides_pulumi(without_iac: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import pulumi"], capture_output=True, text=True, env=without_iac
    )
    assert proc.returncode == 1 and "No module named 'pulumi'" in proc.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_policy_check_names_the_extra_to_install(without_iac: dict[str, str], as_json: bool) -> None:
    args = [CATS, "policy", "check", "--project", str(REPO_ROOT), "--stack", "acme"]
    proc = subprocess.run(
        args + (["--json"] if as_json else []), capture_output=True, text=True, env=without_iac, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr == f"error: `cats policy check` {HINT}; found no module 'pulumi' in this environment\n"
    if as_json:
        error = json.loads(proc.stdout)
        assert error["error"] == "MissingExtraError" and error["exit_code"] == 2 and HINT in error["message"]
    else:
        assert proc.stdout == ""


def test_provisioning_a_cloud_plant_names_the_extra_first(
    without_iac: dict[str, str], tmp_path: Path
) -> None:
    # What `cats redeploy` of a cloud BOM calls before anything else: the SDK is the first thing to
    # install, so it is named before the pulumi CLI or credentials.
    (tmp_path / "Pulumi.yaml").write_text("name: x\nruntime: python\n")
    code = (
        "from pathlib import Path\n"
        "from cats_runtime.execution._provisioner import Provisioner\n"
        "from cats_runtime.errors import MissingExtraError\n"
        f"p = Provisioner(Path({str(tmp_path)!r}), 'acme', 'aws', Path({str(tmp_path / 'state')!r}))\n"
        "try:\n"
        "    p.check_prerequisites()\n"
        "except MissingExtraError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=without_iac, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"provisioning the aws Plant {HINT}")
