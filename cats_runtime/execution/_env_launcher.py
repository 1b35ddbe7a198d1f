"""The child side of ``run_in_environment``: runs as ``python -I -S -B _env_launcher.py JOB.json``.

Standard library only, and not imported as part of cats_runtime: this file is executed by path
in a process whose ``sys.path`` is the standard library plus the Environment's site-packages.
The context API (``_context.py``) is loaded from its file for the same reason.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any


def _digest(pairs: set[tuple[str, str]]) -> str:
    # Same rule as cats_runtime.execution._environment.distributions_digest (checked by a test).
    lines = sorted({f"{re.sub(r'[-_.]+', '-', n).lower()}=={v}" for n, v in pairs})
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _importable() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.add((name, dist.version))
    return found


def _context_module(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("cats_context", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cats_context"] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _load(code_dir: str, package: str, entrypoint: str) -> Any:
    module_name, attr = entrypoint.split(":")
    spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
    pkg = importlib.util.module_from_spec(spec)
    pkg.__path__ = [code_dir]
    sys.modules[package] = pkg
    try:
        module = importlib.import_module(f"{package}.{module_name}")
    except Exception as exc:
        raise _LoadError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise _LoadError(f"expected a callable {attr!r} in module {module_name!r}, found none")
    return fn


class _LoadError(Exception):
    pass


def main() -> int:
    """Run the job; the outcome goes to the job's result file, output to stdout/stderr."""
    job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    sys.path.extend(job["site_packages"])
    # The base interpreter, not the venv's path (which is only where this node caches it).
    base = os.path.realpath(sys.executable)
    facts = {
        "interpreter": f"{sys.implementation.name} {sys.version.split()[0]} {base}",
        "distributions": _digest(_importable()),
    }
    # The facts leave through their own pipe, closed before any user code is imported: what the
    # function does later cannot change what was recorded about its environment.
    with open(job["facts_fd"], "w", encoding="utf-8", closefd=True) as pipe:
        pipe.write(json.dumps(facts))
    result: dict[str, Any] = {}
    try:
        ctx_api = _context_module(job["context"])
        logger = logging.Logger("cats.function", logging.DEBUG)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
        inputs = {k: Path(v) for k, v in job["inputs"].items()}
        datum = None
        if job["datum"] is not None:
            d = job["datum"]
            datum = ctx_api.Datum(d["input"], d["name"], Path(d["path"]), d["cid"])
        ctx = ctx_api.Context(
            inputs=inputs,
            output=Path(job["output"]),
            params=job["params"],
            seed=job["seed"],
            log=logger,
            datum=datum,
        )
        fn = _load(job["code_dir"], job["package"], job["entrypoint"])
        fn(ctx)
        sys.stdout.flush()
        sys.stderr.flush()
        result["ok"] = True
    except (Exception, SystemExit) as exc:  # a function calling sys.exit() failed too
        traceback.print_exc()
        kind = "ExecutionError" if isinstance(exc, _LoadError) else type(exc).__name__
        result["ok"] = False
        result["error"] = f"{kind}: {exc}"
    Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
