"""Org B's CAT: summarize org A's cleaned readings (batch mode: one call sees every station).

Input ``clean``: the directory org A's ``clean`` produced. Output ``summary.csv``: one row per
station with the number of readings and the mean, min and max temperature; params may set
``threshold`` (°C) to also count readings above it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def summarize(ctx: Any) -> None:
    """Write one summary row per station."""
    threshold = float(ctx.params.get("threshold", 25.0))
    rows = []
    for path in sorted(Path(ctx.inputs["clean"]).iterdir()):
        with open(path, newline="") as f:
            temps = [float(r["temp_c"]) for r in csv.DictReader(f)]
        if not temps:
            continue
        hot = sum(1 for t in temps if t > threshold)
        rows.append([path.stem, len(temps), f"{sum(temps) / len(temps):.2f}", min(temps), max(temps), hot])
    with open(ctx.output / "summary.csv", "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["station", "readings", "mean_c", "min_c", "max_c", f"above_{threshold:g}c"])
        writer.writerows(rows)
    ctx.log.info("summarized %d stations", len(rows))
