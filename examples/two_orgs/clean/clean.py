"""Org A's CAT: clean one station's raw readings (map mode: one call per file).

Input ``readings``: a directory of CSV files ``time,temp_f`` (one per station). Output: the same
file name with ``time,temp_c``, rows whose temperature is missing or not a number dropped,
Celsius rounded to 0.1 so the output is byte-identical wherever it runs.
"""

from __future__ import annotations

import csv
from typing import Any


def clean(ctx: Any) -> None:
    """Convert Fahrenheit to Celsius and drop malformed rows."""
    source = ctx.datum.path
    kept = dropped = 0
    with open(source, newline="") as f, open(ctx.output / source.name, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["time", "temp_c"])
        for row in csv.DictReader(f):
            try:
                celsius = (float(row["temp_f"]) - 32.0) * 5.0 / 9.0
            except (KeyError, TypeError, ValueError):
                dropped += 1
                continue
            writer.writerow([row["time"], f"{celsius:.1f}"])
            kept += 1
    ctx.log.info("%s: kept %d rows, dropped %d", source.name, kept, dropped)
