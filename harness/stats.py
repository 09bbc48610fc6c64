"""Latency statistics over per-process samples: robust centre, bootstrap CI, spread and warnings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from harness.schema import LatencyStats

BOOTSTRAP_RESAMPLES = 4_000
CV_WARN = 0.10
MIN_SAMPLES_WARN = 30
MODIFIED_Z_OUTLIER = 10.0  # hyperfine's threshold: about 10 sigma, in MAD units scaled to sigma


def hierarchical_bootstrap_ci(
    samples: Sequence[Sequence[float]], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the median of per-process medians, resampling processes, then samples within each.

    Resampling both levels keeps the process-to-process spread in the interval, which a bootstrap over
    the pooled samples would hide.
    """
    rng = np.random.default_rng(seed)
    groups = [np.asarray(g, dtype=float) for g in samples if len(g)]
    picks = rng.integers(0, len(groups), size=(resamples, len(groups)))
    medians = np.empty((resamples, len(groups)))
    for g_index, group in enumerate(groups):
        chunk = max(1, 2_000_000 // len(group))  # bounds memory for processes with many samples
        for start in range(0, resamples, chunk):
            rows = min(chunk, resamples - start)
            draws = group[rng.integers(0, len(group), size=(rows, len(group)))]
            medians[start : start + rows, g_index] = np.median(draws, axis=1)
    centre = np.median(np.take_along_axis(medians, picks, axis=1), axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(centre, [tail, 100 - tail])
    return float(lo), float(hi)


def tukey_outliers(values: np.ndarray) -> tuple[int, int]:
    """Counts beyond 1.5 IQR (mild) and 3 IQR (severe) from the quartiles; reported, never dropped."""
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    mild = int(np.sum((values < q1 - 1.5 * iqr) | (values > q3 + 1.5 * iqr)))
    severe = int(np.sum((values < q1 - 3 * iqr) | (values > q3 + 3 * iqr)))
    return mild, severe


def summarise(samples: Sequence[Sequence[float]], calls_per_sample: int, seed: int = 0) -> LatencyStats:
    groups = [list(g) for g in samples if len(g)]
    if not groups:
        raise ValueError("no latency samples")
    pooled = np.concatenate([np.asarray(g, dtype=float) for g in groups])
    process_medians = [float(np.median(g)) for g in groups]
    described = sps.describe(pooled) if len(pooled) > 1 else None
    std = float(np.sqrt(described.variance)) if described is not None else 0.0
    mean = float(pooled.mean())
    mild, severe = tukey_outliers(pooled)
    p90, p99 = np.percentile(pooled, [90, 99])
    return LatencyStats(
        median=float(np.median(process_medians)),
        mean=mean,
        std=std,
        min=float(pooled.min()),
        max=float(pooled.max()),
        p90=float(p90),
        p99=float(p99),
        ci95=list(hierarchical_bootstrap_ci(groups, seed=seed)),
        n=len(pooled),
        cv=std / mean if mean > 0 else 0.0,
        process_medians=process_medians,
        calls_per_sample=calls_per_sample,
        outliers_mild=mild,
        outliers_severe=severe,
    )


def slow_start(samples: Sequence[float], head: int = 1) -> bool:
    """True when the first sample(s) are outliers by modified z-score (hyperfine's test)."""
    values = np.asarray(samples, dtype=float)
    if len(values) < 10:
        return False
    mad = sps.median_abs_deviation(values, scale="normal")
    if mad == 0:
        return False
    z = (values[:head] - np.median(values)) / mad
    return bool(np.any(z > MODIFIED_Z_OUTLIER))


def latency_warnings(latency: LatencyStats, samples: Sequence[Sequence[float]]) -> list[str]:
    """Quality warnings, each with its fix."""
    warnings = []
    if latency.cv > CV_WARN:
        warnings.append(
            f"high variation: CV {latency.cv:.0%} > {CV_WARN:.0%}; close other programs, "
            "raise measure.budget_s or pin threads"
        )
    if latency.n < MIN_SAMPLES_WARN:
        warnings.append(f"few samples: {latency.n} < {MIN_SAMPLES_WARN}; raise measure.budget_s")
    if any(slow_start(g) for g in samples):
        warnings.append("slow first samples: the warmup was too short; raise measure.warmup")
    return warnings
