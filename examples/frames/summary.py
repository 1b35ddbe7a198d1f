"""Per-station weather summary with pandas and numpy: a CAT whose Environment is pinned.

Its dependencies are declared in ``requirements.lock`` (made with ``cats lock requirements.in``):
run it with ``--requirements examples/frames/requirements.lock``. The node builds that exact
environment from wheels stored in the CAS; the node's own packages are not importable here.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd


def summarize(ctx: Any) -> None:
    frame = pd.read_csv(ctx.inputs["raw"])
    numeric = ["temp_c", "humidity", "wind_kmh"]
    table = frame.groupby("station")[numeric].agg(["mean", "min", "max"]).round(ctx.params.get("digits", 2))
    table.columns = [f"{col}_{stat}" for col, stat in table.columns]
    table.sort_index().to_csv(ctx.output / "stations.csv", lineterminator="\n")
    # The correlation matrix through numpy directly, so both libraries are exercised.
    corr = np.corrcoef(frame[numeric].to_numpy(dtype=np.float64), rowvar=False)
    (ctx.output / "correlation.json").write_text(
        json.dumps({"columns": numeric, "matrix": np.round(corr, 6).tolist()}, indent=1) + "\n"
    )
    (ctx.output / "versions.json").write_text(
        json.dumps({"numpy": np.__version__, "pandas": pd.__version__}, sort_keys=True) + "\n"
    )
    ctx.log.info("summarized %d rows of %d stations", len(frame), frame["station"].nunique())
