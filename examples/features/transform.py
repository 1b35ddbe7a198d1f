"""Batch CAT: feature engineering on a CSV of daily sensor readings (standard library only).

Input ``raw``: a CSV file with columns ``day,station,temp_c,humidity,wind_kmh``.
Output: ``features.csv`` (one row per input row, z-scored numeric columns plus derived
features) and ``stats.json`` (the per-column mean and standard deviation used).
Params: ``columns`` (numeric columns to standardize; default all three), ``digits`` (rounding).
Everything is deterministic: fixed column order, fixed rounding, sorted JSON keys.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from typing import Any


def _z(value: float, mean: float, sd: float) -> float:
    return 0.0 if sd == 0 else (value - mean) / sd


def engineer(ctx: Any) -> None:
    digits = int(ctx.params.get("digits", 4))
    with open(ctx.inputs["raw"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns = list(ctx.params.get("columns", ["temp_c", "humidity", "wind_kmh"]))
    ctx.log.info("read %d rows, standardizing %s", len(rows), ", ".join(columns))
    values = {c: [float(r[c]) for r in rows] for c in columns}
    stats = {
        c: {"mean": round(statistics.fmean(v), digits), "sd": round(statistics.pstdev(v), digits)}
        for c, v in values.items()
    }
    out_fields = ["day", "station", *[f"{c}_z" for c in columns], "heat_index", "wind_chill", "is_windy"]
    with open(ctx.output / "features.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=out_fields, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            t, h, w = float(r["temp_c"]), float(r["humidity"]), float(r["wind_kmh"])
            out: dict[str, Any] = {"day": r["day"], "station": r["station"]}
            for c in columns:
                out[f"{c}_z"] = f"{_z(float(r[c]), stats[c]['mean'], stats[c]['sd']):.{digits}f}"
            out["heat_index"] = f"{t + 0.05 * h:.{digits}f}"
            out["wind_chill"] = f"{13.12 + 0.6215 * t - 11.37 * math.pow(max(w, 1.0), 0.16):.{digits}f}"
            out["is_windy"] = "1" if w >= 20 else "0"
            writer.writerow(out)
    (ctx.output / "stats.json").write_text(
        json.dumps(stats, sort_keys=True, indent=2) + "\n", encoding="utf-8"
    )
    print(f"wrote {len(rows)} feature rows")
