"""Map CAT: normalize one text file and count its words (one call per file of the input folder).

The datum is ``ctx.datum.path`` (a text file). Output: ``<name>.json`` with the word counts
(lower-cased, punctuation stripped), sorted by count then word, and the number of lines.
Param ``min_length`` drops shorter words (default 1).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def count(ctx: Any) -> None:
    min_length = int(ctx.params.get("min_length", 1))
    text = ctx.datum.path.read_text(encoding="utf-8")
    words = [w for w in WORD.findall(text.lower()) if len(w) >= min_length]
    counts = Counter(words)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    stem = ctx.datum.name.rsplit(".", 1)[0]
    result = {"file": ctx.datum.name, "lines": text.count("\n"), "words": len(words), "counts": dict(ranked)}
    (ctx.output / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    ctx.log.info("%s: %d words, %d distinct", ctx.datum.name, len(words), len(counts))
