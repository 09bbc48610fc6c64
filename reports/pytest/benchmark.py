"""Latency results in pytest-benchmark's JSON format, so its own `compare` tooling reads them.

Each measured case is one benchmark: group = model, name = `model[variant-device]`. A sample of
ondevice-bench (the mean of `calls_per_sample` calls) is one pytest-benchmark round of that many
iterations; times are in seconds.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from harness.results.readings.queries import measured
from harness.results.schema import Result, RunRecord

FORMAT_VERSION = "5.1.0"  # the pytest-benchmark version whose JSON layout this follows


def _stats(result: Result) -> dict[str, Any]:
    values = np.concatenate([np.asarray(s, dtype=float) for s in result.samples_ms]) / 1000.0
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    iqr = q3 - q1
    mean, std = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = values[(values >= low) & (values <= high)]
    iqr_outliers = int(np.sum((values < low) | (values > high)))
    stddev_outliers = int(np.sum((values < mean - std) | (values > mean + std)))
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": mean,
        "stddev": std,
        "rounds": len(values),
        "median": float(median),
        "iqr": float(iqr),
        "q1": float(q1),
        "q3": float(q3),
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": float(inside.min()) if len(inside) else float(values.min()),
        "hd15iqr": float(inside.max()) if len(inside) else float(values.max()),
        "ops": 1.0 / mean if mean > 0 else 0.0,
        "total": float(values.sum()) * (result.latency_ms.calls_per_sample if result.latency_ms else 1),
        "iterations": result.latency_ms.calls_per_sample if result.latency_ms else 1,
        "data": [float(v) for v in values],
    }


def _benchmark(run: RunRecord, result: Result) -> dict[str, Any]:
    measure = run.profile.profile.measure
    param = f"{result.variant}-{result.device}"
    return {
        "group": result.model,
        "name": f"{result.model}[{param}]",
        "fullname": f"ondevice-bench::{result.model}[{param}]",
        "params": {"variant": result.variant, "device": result.device, "backend": result.backend},
        "param": param,
        "extra_info": {
            "run_id": run.run_id,
            "backend": result.backend,
            "ci95_ms": result.latency_ms.ci95 if result.latency_ms else None,
            "median_of_process_medians_ms": result.latency_ms.median if result.latency_ms else None,
            "artifact_sha256": result.artifact.sha256,
        },
        "options": {
            "disable_gc": False,
            "timer": "time.perf_counter_ns",
            "min_rounds": 5,
            "max_time": measure.budget_s,
            "min_time": measure.min_sample_ms / 1000.0,
            "warmup": measure.warmup,
        },
        "stats": _stats(result),
    }


def to_pytest_benchmark(runs: list[RunRecord]) -> dict[str, Any]:
    first = runs[0]
    env = first.environment
    return {
        "machine_info": {
            "node": env.hostname,
            "processor": env.cpu,
            "machine": env.machine,
            "python_implementation": platform.python_implementation(),
            "python_version": env.python,
            "release": env.os,
            "system": env.os.split(" ")[0],
            "cpu": {"brand_raw": env.cpu, "count": env.cores},
        },
        "commit_info": {"id": None, "time": None, "author_time": None, "dirty": False, "project": "ondevice-bench"},
        "benchmarks": [_benchmark(run, r) for run in runs for r in run.results if measured(r) and r.samples_ms],
        "datetime": first.created_at,
        "version": FORMAT_VERSION,
    }


def write_pytest_benchmark(runs: list[RunRecord], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_pytest_benchmark(runs), indent=1))
