"""Results files as a tidy pandas DataFrame: one row per case, the headline figures as columns.

from reports.frame import load_frame
df = load_frame(["before.json", "after.json"])
df.pivot_table(index="variant", columns="run_id", values="median_ms")
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from harness.results.schema import Result, RunRecord, headline_figures, load_results

METRICS = ("max_abs_err", "cosine", "snr_db", "top1_agreement", "task_accuracy", "accuracy_ratio")


def result_row(run: RunRecord, result: Result) -> dict[str, Any]:
    metrics = result.parity.metrics if result.parity else {}
    return {
        "run_id": run.run_id,
        "created_at": run.created_at,
        "host": run.environment.hostname,
        **headline_figures(result),
        **{key: metrics.get(key) for key in METRICS},
        "warnings": "; ".join(result.warnings),
    }


def frame(runs: Iterable[RunRecord]) -> pd.DataFrame:
    return pd.DataFrame([result_row(run, result) for run in runs for result in run.results])


def load_frame(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per case across every given results file (each checked against the schema)."""
    return frame(load_results(Path(p)) for p in paths)
