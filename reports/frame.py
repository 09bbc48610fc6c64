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

from harness.schema import Result, RunRecord, load_results

COLUMNS = [
    "run_id", "created_at", "host", "model", "variant", "format", "device", "backend", "status", "reason",
    "median_ms", "ci95_lo_ms", "ci95_hi_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "cv", "n", "processes",
    "load_cold_ms", "load_warm_ms", "first_inference_ms", "peak_rss_bytes", "load_delta_bytes",
    "energy_source", "cpu_ms_per_inference", "mj_per_inference", "size_bytes", "sha256",
    "parity_passed", "max_abs_err", "cosine", "snr_db", "top1_agreement", "task_accuracy", "accuracy_ratio",
    "warnings",
]  # fmt: skip


def result_row(run: RunRecord, result: Result) -> dict[str, Any]:
    lat = result.latency_ms
    metrics = result.parity.metrics if result.parity else {}
    return {
        "run_id": run.run_id,
        "created_at": run.created_at,
        "host": run.environment.hostname,
        "model": result.model,
        "variant": result.variant,
        "format": result.format,
        "device": result.device,
        "backend": result.backend,
        "status": result.status,
        "reason": result.reason,
        "median_ms": lat.median if lat else None,
        "ci95_lo_ms": lat.ci95[0] if lat else None,
        "ci95_hi_ms": lat.ci95[1] if lat else None,
        "p90_ms": lat.p90 if lat else None,
        "p99_ms": lat.p99 if lat else None,
        "mean_ms": lat.mean if lat else None,
        "std_ms": lat.std if lat else None,
        "cv": lat.cv if lat else None,
        "n": lat.n if lat else None,
        "processes": len(lat.process_medians) if lat else None,
        "load_cold_ms": result.load_ms.cold,
        "load_warm_ms": result.load_ms.warm,
        "first_inference_ms": result.first_inference_ms,
        "peak_rss_bytes": result.memory.peak_rss_bytes,
        "load_delta_bytes": result.memory.load_delta_bytes,
        "energy_source": result.energy.source,
        "cpu_ms_per_inference": result.energy.cpu_ms_per_inference,
        "mj_per_inference": result.energy.mj_per_inference,
        "size_bytes": result.artifact.size_bytes,
        "sha256": result.artifact.sha256,
        "parity_passed": result.parity.passed if result.parity else None,
        **{key: metrics.get(key) for key in ("max_abs_err", "cosine", "snr_db", "top1_agreement")},
        **{key: metrics.get(key) for key in ("task_accuracy", "accuracy_ratio")},
        "warnings": "; ".join(result.warnings),
    }


def frame(runs: Iterable[RunRecord]) -> pd.DataFrame:
    rows = [result_row(run, result) for run in runs for result in run.results]
    return pd.DataFrame(rows, columns=COLUMNS)


def load_frame(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per case across every given results file (each checked against the schema)."""
    return frame(load_results(Path(p)) for p in paths)
