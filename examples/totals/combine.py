"""Batch CAT chained after ``wordcount``: combine the per-file counts into corpus totals.

Input ``counts``: the output directory of the wordcount CAT (one ``<name>.json`` per file).
Output: ``totals.json`` (top ``top`` words over the corpus) and ``files.csv`` (words per file).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from typing import Any


def combine(ctx: Any) -> None:
    top = int(ctx.params.get("top", 10))
    total: Counter[str] = Counter()
    per_file = []
    for path in sorted(ctx.inputs["counts"].iterdir()):
        data = json.loads(path.read_text(encoding="utf-8"))
        total.update(data["counts"])
        per_file.append((data["file"], data["words"], len(data["counts"])))
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    (ctx.output / "totals.json").write_text(
        json.dumps({"files": len(per_file), "top": dict(ranked)}, indent=1) + "\n", encoding="utf-8"
    )
    with open(ctx.output / "files.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["file", "words", "distinct"])
        writer.writerows(per_file)
    print(f"combined {len(per_file)} files")
