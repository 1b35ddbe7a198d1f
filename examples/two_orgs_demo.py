"""Two organizations, two CAT Nodes, one machine: exchange by CID, re-execute, verify, build on it.

    python examples/two_orgs_demo.py [--workdir DIR] [--keep]

Org A adds a dataset of weather readings, runs a CAT that cleans it (map mode, on its local
Ray) and publishes the BOM CID. Org B, with its own store and node, fetches everything by that
CID from A's gateway (every block verified), re-executes A's run locally and checks that the
output is bit-identical and that A's signature is valid, then runs its own CAT on A's output by
submitting an Order to its node with a bearer token. B's BOM names A's as its parent, so the
lineage spans both organizations. Every step is a real `cats` process; the nodes are real HTTP
servers on loopback ports.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
CATS = str(Path(sys.executable).with_name("cats"))
STATIONS = ("oslo", "lisbon", "nairobi", "quito")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Org:
    """One organization: a CATs home, and its node process once started."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.home = workdir / name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def cats(self, *args: str, json_out: bool = False) -> Any:
        """Run `cats --home <home> ARGS` and return its stdout (parsed with --json)."""
        cmd = [CATS, "--home", str(self.home), *args, *(["--json"] if json_out else [])]
        proc = subprocess.run(  # noqa: S603  (our own cats executable, argument list)
            cmd, capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            raise SystemExit(
                f"[{self.name}] cats {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
            )
        return json.loads(proc.stdout) if json_out else proc.stdout.strip()

    def serve(self) -> None:
        log = open(self.home.parent / f"{self.name}-node.log", "wb")  # noqa: SIM115 (lives with the process)
        self.proc = subprocess.Popen(  # noqa: S603  (our own cats executable)
            [CATS, "--home", str(self.home), "node", "serve", "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"[{self.name}] node exited; see {self.home.parent / (self.name + '-node.log')}"
                )
            try:
                r = httpx.get(f"{self.url}/node", timeout=2)
                if r.status_code == 200:
                    return r.json()  # type: ignore[no-any-return]
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"[{self.name}] node not ready after {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def make_dataset(path: Path) -> None:
    """Readings (Fahrenheit, some missing) for a few stations; deterministic."""
    path.mkdir(parents=True)
    rng = random.Random(2026)  # noqa: S311  (sample data, not secrets)
    base = {"oslo": 41, "lisbon": 64, "nairobi": 70, "quito": 58}
    for station in STATIONS:
        lines = ["time,temp_f"]
        for hour in range(24 * 14):
            value = "NA" if rng.random() < 0.03 else f"{base[station] + rng.uniform(-12, 12):.1f}"
            lines.append(f"2026-11-{1 + hour // 24:02d}T{hour % 24:02d}:00,{value}")
        (path / f"{station}.csv").write_text("\n".join(lines) + "\n")


def step(n: int, text: str, started: float) -> None:
    print(f"[{time.monotonic() - started:5.1f}s] {n}. {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, help="Where the two homes go (default: a temporary directory)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the work directory.")
    args = parser.parse_args()
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the `finally` below stops both nodes
    # and removes the temporary work directory instead of leaving them behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cats-two-orgs-"))
    workdir.mkdir(parents=True, exist_ok=True)
    a, b = Org("org-a", workdir), Org("org-b", workdir)
    t0 = time.monotonic()
    try:
        step(1, "org A adds a dataset and runs `clean` (map mode) on its local Ray", t0)
        make_dataset(workdir / "readings")
        dataset = a.cats("add", str(workdir / "readings"), json_out=True)["cid"]
        run_a = a.cats(
            "run",
            "--function",
            f"{HERE / 'two_orgs' / 'clean'}:clean:clean",
            "--mode",
            "map",
            "--input",
            f"readings={dataset}",
            json_out=True,
        )
        bom_a, out_a = run_a["bom"], run_a["output"]
        a.serve()
        b.serve()
        did_a, did_b = a.wait_ready()["did"], b.wait_ready()["did"]
        print(f"         org A publishes BOM {bom_a}\n         (signed by {did_a})")

        step(2, f"org B fetches everything by CID from A's gateway {a.url}", t0)
        fetched = b.cats("fetch", bom_a, "--from", a.url, json_out=True)
        print(
            f"         {fetched['blocks']} blocks, {fetched['bytes']} bytes via {fetched['via']}, "
            f"every block verified; misbehaving peers: {len(fetched['failures'])}"
        )

        step(3, "org B checks A's signature and re-executes A's run on its own local Plant", t0)
        structural = b.cats("verify", bom_a, "--structural", json_out=True)
        verdict = b.cats("verify", bom_a, json_out=True)
        print(
            f"         signature of A: {'valid' if structural['signed'] else 'MISSING'}; "
            f"re-execution: {verdict['verdict']} (output {verdict['found']})"
        )
        if verdict["verdict"] != "match" or not structural["signed"]:
            raise SystemExit("verification failed")

        step(4, "org B runs `summarize` on A's output by submitting an Order to its own node", t0)
        token = b.cats("node", "token", "add", "org-b-analysts")
        (workdir / "org-b.token").write_text(token + "\n")
        summarize = f"{HERE / 'two_orgs' / 'summarize'}:summarize:summarize"
        b.cats("node", "allow", "--function", summarize)
        refused = httpx.post(f"{b.url}/orders", json={"order": bom_a}).status_code
        run_b = b.cats(
            "node",
            "submit",
            "--to",
            b.url,
            "--token-file",
            str(workdir / "org-b.token"),
            "--function",
            summarize,
            "--input",
            f"clean={out_a}",
            "--param",
            "threshold=20",
            json_out=True,
        )
        bom_b = run_b["bom"]
        print(f"         without a token: HTTP {refused}; with it: run {run_b['run']} {run_b['status']}")
        node_bom = httpx.get(f"{b.url}/boms/{bom_b}").json()
        signer = "B's node" if node_bom["issuer"] == did_b else node_bom["issuer"]
        print(f"         BOM {bom_b}\n         signed by {signer}: signature {node_bom['signature']}")

        step(5, "lineage of B's result spans both organizations", t0)
        lineage = b.cats("lineage", bom_b)
        print("\n".join("         " + line for line in lineage.splitlines()))
        parents = node_bom["record"]["parents"]
        if parents != [{"/": bom_a}]:
            raise SystemExit(f"expected B's BOM to name A's BOM as parent, found {parents}")
        b.cats("get", run_b["output"], "-o", str(workdir / "result"))
        print("         B's result, summary.csv:")
        for line in (workdir / "result" / "summary.csv").read_text().splitlines():
            print(f"           {line}")
        elapsed = time.monotonic() - t0
        print(
            f"\nDone in {elapsed:.1f}s. Org A {did_a[:24]}... -> BOM {bom_a[:16]}...; "
            f"org B {did_b[:24]}... -> BOM {bom_b[:16]}... (parent: A's BOM)"
        )
    finally:
        try:
            a.stop()
        finally:
            try:
                b.stop()
            finally:
                # A `cats` command run on a home leaves its warm local Ray for the idle timeout;
                # the demo is over, so stop them now (a no-op where none runs).
                for org in (a, b):
                    if org.home.is_dir():
                        subprocess.run(  # noqa: S603  (our own cats executable, argument list)
                            [CATS, "--home", str(org.home), "ray", "stop"],
                            capture_output=True,
                            timeout=120,
                            check=False,
                        )
                # Even when stopping a node failed, the temporary work directory goes.
                if not args.keep and args.workdir is None:
                    shutil.rmtree(workdir, ignore_errors=True)
                elif args.keep:
                    print(f"work directory kept: {workdir}")


if __name__ == "__main__":
    main()
