"""The node's page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

Two real nodes, built by the two-organization demo (``examples/two_orgs_demo.py --keep``) and
then served again as separate processes: a person opens org B's page, clicks from a run to its
BOM, to its parent BOM signed by org A, to an output directory and a file, and reads what each
page says. A second test opens hand-built hostile records and checks that nothing in them ran.

Selenium is pointed at ``/usr/bin/chromedriver`` explicitly and run with ``SE_OFFLINE``, so
Selenium Manager never downloads a browser or driver.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nodeproc import CATS, REPO_ROOT, NodeProcess, start_node, wait_run
from ui_homes import XSS_ERROR, XSS_FILE, XSS_LOG, XSS_NAME, XSS_PARAM, build_home

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); see .ci/apt-test.txt",
)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch anything
    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _text(driver: Any, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _screenshot(driver: Any, path: Path) -> None:
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1400, min(height + 120, 5000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)


def _not_pwned(driver: Any) -> None:
    assert driver.execute_script("return window.pwned === undefined"), "a record's text ran as script"
    assert driver.find_elements(By.TAG_NAME, "script") == []


def test_hostile_records_are_shown_as_text(browser: Any, tmp_path: Path) -> None:
    built = build_home(tmp_path / "homes")
    node = start_node(built.home)
    try:
        browser.get(node.url + "/")
        _not_pwned(browser)
        failed = browser.find_element(By.CSS_SELECTOR, 'tr.run[data-status="failed"] .err')
        assert failed.text == XSS_ERROR
        names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "tr.run td.fn")]
        assert any(n.startswith(XSS_NAME) for n in names)
        browser.get(f"{node.url}/ui/bom/{built.peer_bom}")
        _not_pwned(browser)
        assert _text(browser, "#function-name") == XSS_NAME
        assert json.loads(_text(browser, "#params")) == {"threshold": XSS_PARAM}
        assert _text(browser, "#log") == XSS_LOG.rstrip("\n")
        browser.get(f"{node.url}/ui/ipfs/{built.peer_output}")
        browser.find_element(By.LINK_TEXT, XSS_FILE).click()
        _not_pwned(browser)
        assert _text(browser, "#data-name") == XSS_FILE
        assert _text(browser, "#content") == "<script>window.pwned=6</script>"
    finally:
        node.stop()


@pytest.fixture(scope="module")
def two_orgs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo's two homes, each served again by its own ``cats node serve`` process."""
    workdir = tmp_path_factory.mktemp("two-orgs")
    demo = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "examples" / "two_orgs_demo.py"),
            "--workdir",
            str(workdir),
            "--keep",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    nodes: list[NodeProcess] = []
    try:
        a = start_node(workdir / "org-a")
        nodes.append(a)
        b = start_node(workdir / "org-b")
        nodes.append(b)
        yield {"a": a, "b": b, "workdir": workdir}
    finally:
        for node in nodes:
            node.stop()


def _submit_failing(workdir: Path, b: NodeProcess, clean_output: str) -> None:
    """Org B runs ``summarize`` with a threshold that is not a number: a failed run on B's node."""
    summarize = f"{REPO_ROOT / 'examples' / 'two_orgs' / 'summarize'}:summarize:summarize"
    proc = subprocess.run(
        [
            CATS,
            "--home",
            str(workdir / "org-b"),
            "node",
            "submit",
            "--to",
            b.url,
            "--token-file",
            str(workdir / "org-b.token"),
            "--function",
            summarize,
            "--input",
            f"clean={clean_output}",
            "--param",
            "threshold=<b>hot</b>",
            "--no-wait",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(proc.stdout)
    assert wait_run(b.url, run["run"])["status"] == "failed"


@pytest.mark.slow
def test_click_from_a_run_to_its_parent_in_the_other_org_to_a_file(
    browser: Any, two_orgs: dict[str, Any], tmp_path: Path
) -> None:
    a, b, workdir = two_orgs["a"], two_orgs["b"], two_orgs["workdir"]
    did_a = httpx.get(f"{a.url}/node", timeout=10).json()["did"]
    did_b = httpx.get(f"{b.url}/node", timeout=10).json()["did"]
    analysts = {"Authorization": f"Bearer {(workdir / 'org-b.token').read_text().strip()}"}
    runs_b = httpx.get(f"{b.url}/orders", headers=analysts, timeout=10).json()["runs"]
    bom_b = next(r["bom"] for r in runs_b if r["status"] == "succeeded")
    parent = httpx.get(f"{b.url}/boms/{bom_b}", timeout=10).json()["record"]["parents"][0]["/"]
    clean_output = httpx.get(f"{b.url}/boms/{parent}", timeout=10).json()["record"]["output"]["/"]
    _submit_failing(workdir, b, clean_output)

    # Org B's runs: its own summarize run (submitted by its analysts), A's clean run (a peer's),
    # and the failed run with its error.
    browser.get(b.url + "/")
    assert _text(browser, "#node-did") == did_b
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.run")
    by_status = [(r.get_attribute("data-status"), r.text) for r in rows]
    failed = [t for s, t in by_status if s == "failed"]
    assert failed and "<b>hot</b>" in failed[0] and "org-b-analysts" in failed[0]
    peer_row = next(r for r in rows if f'title="{did_a}"' in r.get_attribute("innerHTML"))
    assert "clean" in peer_row.find_element(By.CSS_SELECTOR, "td.fn").text
    assert "peer" in peer_row.find_element(By.CSS_SELECTOR, "td.issuer").text
    assert "match" in peer_row.text  # B re-executed A's run in the demo
    own_row = next(r for r in rows if f"/ui/bom/{bom_b}" in r.get_attribute("innerHTML"))
    assert "this node" in own_row.find_element(By.CSS_SELECTOR, "td.issuer").text
    assert own_row.find_element(By.CSS_SELECTOR, "td.org").text == "org-b-analysts"
    assert "UTC" in own_row.text
    _screenshot(browser, tmp_path / "runs.png")

    # Click: run -> its BOM.
    own_row.find_element(By.CSS_SELECTOR, "td.bom a").click()
    assert _text(browser, "#bom-cid") == bom_b
    assert _text(browser, "#signature") == "valid"
    assert did_b in _text(browser, "#issuer") and "this node" in _text(browser, "#issuer")
    assert _text(browser, "#function-name") == "summarize"
    assert _text(browser, "#entrypoint") == "summarize:summarize"
    assert '"threshold": 20' in _text(browser, "#params")
    assert "summarized 4 stations" in _text(browser, "#log")
    graph = browser.find_element(By.CSS_SELECTOR, "#lineage svg")
    drawn = {e.get_attribute("data-cid") for e in graph.find_elements(By.CSS_SELECTOR, "a.lnode-bom")}
    assert {bom_b, parent} <= drawn
    legend = _text(browser, ".legend")
    assert did_a[-6:] in legend and did_b[-6:] in legend and "peer" in legend  # both organizations
    _screenshot(browser, tmp_path / "bom-b.png")

    # Click: -> its parent, signed by org A, fetched from A's node.
    browser.find_element(By.CSS_SELECTOR, f'#parents a[href="/ui/bom/{parent}"]').click()
    assert _text(browser, "#bom-cid") == parent
    assert _text(browser, "#signature") == "valid"
    assert did_a in _text(browser, "#issuer") and "peer" in _text(browser, "#issuer")
    assert _text(browser, "#function-name") == "clean"
    assert _text(browser, "#mode") == "map"
    assert "match" in _text(browser, "#verifications")
    assert bom_b in _text(browser, "#children")
    _screenshot(browser, tmp_path / "bom-a.png")

    # Click: -> its output directory -> one station's file, shown inline.
    browser.find_element(By.CSS_SELECTOR, "#output td a").click()
    assert _text(browser, "#data-cid") == clean_output
    entries = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#entries a.entry")]
    assert entries == ["lisbon.csv", "nairobi.csv", "oslo.csv", "quito.csv"]
    browser.find_element(By.LINK_TEXT, "oslo.csv").click()
    assert _text(browser, "#data-name") == "oslo.csv"
    content = _text(browser, "#content").splitlines()
    assert content[0] == "time,temp_c" and content[1].startswith("2026-11-01T00:00,")
    _screenshot(browser, tmp_path / "file.png")

    # Org A's own page: its clean run is its own there.
    browser.get(a.url + "/")
    row = next(
        r for r in browser.find_elements(By.CSS_SELECTOR, "tr.run") if parent in r.get_attribute("innerHTML")
    )
    assert "this node" in row.find_element(By.CSS_SELECTOR, "td.issuer").text
    keep = os.environ.get("CATS_UI_SCREENSHOTS")
    if keep:  # for a person to look at: CATS_UI_SCREENSHOTS=dir pytest ...
        for png in tmp_path.glob("*.png"):
            shutil.copy(png, Path(keep) / png.name)
