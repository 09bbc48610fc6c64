"""Latency statistics over per-process samples: robust centre, bootstrap CI, spread and warnings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np

from harness.results.schema import LatencyStats, Verdict

BOOTSTRAP_RESAMPLES = 4_000
BOOTSTRAP_MAX_POINTS = 1_000  # per process; more samples are condensed to this many quantiles
CV_WARN = 0.10
MIN_SAMPLES_WARN = 30
MODIFIED_Z_OUTLIER = 10.0  # hyperfine's threshold: about 10 sigma, in MAD units scaled to sigma


def condensed(group: Sequence[float], points: int = BOOTSTRAP_MAX_POINTS) -> np.ndarray:
    """The samples, or `points` evenly spaced quantiles of them where there are more: the same
    distribution in bounded size. Resampling the quantiles spreads the bootstrap median a little wider
    than resampling all samples would (fewer points), so the interval errs on the cautious side, and
    the cost of a bootstrap no longer grows with the samples a results file holds."""
    values = np.asarray(group, dtype=float)
    if len(values) <= points:
        return values
    return np.quantile(values, (np.arange(points) + 0.5) / points)


def bootstrap_centres(groups: Sequence[Sequence[float]], rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Bootstrap replicates of the median of per-process medians, resampling processes, then samples
    within each. Resampling both levels keeps the process-to-process spread in the interval, which a
    bootstrap over the pooled samples would hide."""
    arrays = [condensed(g) for g in groups if len(g)]
    medians = np.empty((resamples, len(arrays)))
    for index, group in enumerate(arrays):
        chunk = max(1, 2_000_000 // len(group))  # bounds memory for processes with many samples
        for start in range(0, resamples, chunk):
            rows = min(chunk, resamples - start)
            draws = group[rng.integers(0, len(group), size=(rows, len(group)))]
            medians[start : start + rows, index] = np.median(draws, axis=1)
    picks = rng.integers(0, len(arrays), size=(resamples, len(arrays)))
    return np.median(np.take_along_axis(medians, picks, axis=1), axis=1)


def _percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(replicates, [tail, 100 - tail])
    return float(lo), float(hi)


def hierarchical_bootstrap_ci(
    samples: Sequence[Sequence[float]], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the median of per-process medians."""
    return _percentile_interval(bootstrap_centres(samples, np.random.default_rng(seed), resamples), level)


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
    std = float(pooled.std(ddof=1)) if len(pooled) > 1 else 0.0
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
    mad = 1.4826 * float(np.median(np.abs(values - np.median(values))))  # normal-consistent MAD
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


VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


@dataclass
class Comparison:
    """Current against baseline, lower is better (latency). `ratio` is current/baseline median."""

    ratio: float
    ci95: list[float]
    p_value: float | None
    verdict: Verdict
    detail: str


def min_attainable_p(n: int, m: int) -> float:
    """The smallest two-sided p an exact Mann-Whitney U test can give with n and m observations."""
    return 2 / math.comb(n + m, n)


def ratio_ci(
    baseline: Sequence[Sequence[float]], current: Sequence[Sequence[float]], seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Bootstrap CI of median(current)/median(baseline), each a median of per-process medians."""
    rng = np.random.default_rng(seed)
    current_centres = bootstrap_centres(current, rng, BOOTSTRAP_RESAMPLES)
    return _percentile_interval(current_centres / bootstrap_centres(baseline, rng, BOOTSTRAP_RESAMPLES), level)


def compare_latency(
    baseline: Sequence[Sequence[float]],
    current: Sequence[Sequence[float]],
    threshold: float = 0.05,
    alpha: float = 0.05,
    seed: int = 0,
) -> Comparison:
    """A change counts only when a Mann-Whitney U test on per-process medians is significant at `alpha`
    and the bootstrap CI of the ratio lies wholly beyond 1 +/- `threshold` (criterion's rule)."""
    base_medians = [float(np.median(g)) for g in baseline if len(g)]
    current_medians = [float(np.median(g)) for g in current if len(g)]
    ratio = float(np.median(current_medians) / np.median(base_medians))
    ci = list(ratio_ci(baseline, current, seed))
    n, m = len(base_medians), len(current_medians)
    if n < 2 or m < 2 or min_attainable_p(n, m) >= alpha:
        needed = next(k for k in range(2, 50) if min_attainable_p(k, k) < alpha)
        detail = f"{n} and {m} processes cannot reach p < {alpha}; run at least {needed} per side"
        return Comparison(ratio, ci, None, "inconclusive", detail)
    from scipy import stats as sps  # imported here: scipy.stats costs the CLI 0.8 s at start

    p_value = float(sps.mannwhitneyu(base_medians, current_medians, alternative="two-sided").pvalue)
    if p_value >= alpha:
        return Comparison(ratio, ci, p_value, "no change", f"p = {p_value:.3g} >= {alpha}")
    if ci[0] > 1 + threshold:
        return Comparison(ratio, ci, p_value, "regression", f"p = {p_value:.3g}; CI above +{threshold:.0%}")
    if ci[1] < 1 - threshold:
        return Comparison(ratio, ci, p_value, "improvement", f"p = {p_value:.3g}; CI below -{threshold:.0%}")
    return Comparison(ratio, ci, p_value, "within noise", f"p = {p_value:.3g}; CI reaches into +/-{threshold:.0%}")
