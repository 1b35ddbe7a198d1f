"""``cats new NAME``: a working Function directory to start from."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from ..errors import InvalidInputError

__all__ = ["SCAFFOLD_ENTRYPOINT", "new_function"]

SCAFFOLD_ENTRYPOINT: Final = "main:main"
"""The ``module:callable`` of a scaffolded Function."""

_MODULE: Final = '''"""{name}: a CATs Function.

CATs calls ``main(ctx)`` once per run (``--mode batch``, the default) or once per top-level
entry of the first input (``--mode map``). ``ctx`` holds:

* ``ctx.inputs``: input name -> a read-only Path (a file or a directory), from ``--input``;
  in map mode the mapped input's Path is the current entry.
* ``ctx.output``: an empty directory; everything written there becomes the output CID.
* ``ctx.params``: the ``--param`` values, checked against ``cats.toml`` (defaults filled in).
* ``ctx.seed``: the ``--seed``; use it for any randomness (``random.Random(ctx.seed)``).
* ``ctx.log``: a logger whose records go to the run's log (``cats log BOM``).
* ``ctx.datum``: the current entry in map mode (``.input``, ``.name``, ``.path``, ``.cid``), else None.

Read only ``ctx``: the clock, the network or the environment would make the output differ
when the run is re-executed (``cats verify``).
"""

import json


def main(ctx):
    """Count the bytes and lines of every input file and write them as JSON."""
    files = {{}}
    for name, path in sorted(ctx.inputs.items()):
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in found:
            data = file.read_bytes()
            key = name if file == path else f"{{name}}/{{file.relative_to(path).as_posix()}}"
            files[key] = {{"bytes": len(data), "lines": data.count(b"\\n")}}
    ctx.log.info("summarized %d file(s)", len(files))
    # One output file per datum in map mode, so datums never write the same name.
    target = f"{{ctx.datum.name}}.json" if ctx.datum is not None else "summary.json"
    summary = {{"label": ctx.params["label"], "files": files}}
    text = json.dumps(summary, indent=ctx.params["indent"], sort_keys=True)
    (ctx.output / target).write_text(text + "\\n", encoding="utf-8")
'''

_DECLARATION: Final = """# This Function's parameters: `cats run ... --param label=iris --param indent=4`.
# `cats run` refuses unknown names and values of the wrong type before anything runs, and
# records the defaults below in the Order. Types: string, integer, number, boolean, array,
# object, any. A param without a default must be given.

[params.label]
type = "string"
default = "summary"
description = "A label written into the JSON output"

[params.indent]
type = "integer"
default = 2
description = "Indentation of the JSON output"
"""

_README: Final = """# {name}

A CATs Function: `cats run --function {path}:{entrypoint} --input data=PATH` counts the bytes and
lines of every input file (`main.py`; its parameters are declared in `cats.toml`).
"""


def new_function(target: Path) -> Path:
    """Create a working Function directory at ``target`` (``main.py``, ``cats.toml``, ``README.md``).

    Returns:
        ``target``.

    Raises:
        InvalidInputError: ``target`` already exists, or its parent directory does not.
    """
    if target.exists():
        raise InvalidInputError(f"expected a new directory for the Function, found {target} already there")
    if not target.parent.is_dir():
        raise InvalidInputError(f"expected an existing parent directory for {target}, found none")
    name = target.name
    target.mkdir()
    (target / "main.py").write_text(_MODULE.format(name=name), encoding="utf-8")
    (target / "cats.toml").write_text(_DECLARATION, encoding="utf-8")
    (target / "README.md").write_text(
        _README.format(name=name, path=target, entrypoint=SCAFFOLD_ENTRYPOINT), encoding="utf-8"
    )
    return target
