from __future__ import annotations

import numpy as np
import pytest

from harness.results.stats import (
    compare_latency,
    hierarchical_bootstrap_ci,
    latency_warnings,
    min_attainable_p,
    slow_start,
    summarise,
    tukey_outliers,
)


def test_summary_of_known_samples() -> None:
    rng = np.random.default_rng(0)
    groups = [list(rng.normal(10 + shift, 0.1, 200)) for shift in (-0.2, 0.0, 0.2)]
    stats = summarise(groups, calls_per_sample=4)
    assert stats.n == 600 and stats.calls_per_sample == 4
    assert stats.median == pytest.approx(10.0, abs=0.05)
    assert stats.ci95[0] < stats.median < stats.ci95[1]
    assert stats.min <= stats.p90 <= stats.p99 <= stats.max
    assert stats.process_medians == pytest.approx([9.8, 10.0, 10.2], abs=0.05)
    assert stats.cv == pytest.approx(stats.std / stats.mean)


def test_ci_widens_with_process_spread() -> None:
    rng = np.random.default_rng(1)
    tight = [list(rng.normal(10, 0.1, 100)) for _ in range(5)]
    spread = [list(rng.normal(10 + s, 0.1, 100)) for s in (-1, -0.5, 0, 0.5, 1)]
    lo_t, hi_t = hierarchical_bootstrap_ci(tight)
    lo_s, hi_s = hierarchical_bootstrap_ci(spread)
    assert hi_s - lo_s > 5 * (hi_t - lo_t)


def test_tukey_counts_mild_and_severe() -> None:
    values = np.array([10.0] * 20 + [10.5] * 20 + [11.5, 30.0])
    mild, severe = tukey_outliers(values)
    assert (mild, severe) == (2, 1)  # fences 11.25 (mild) and 12 (severe)
    assert tukey_outliers(np.arange(100.0)) == (0, 0)


def test_warnings_name_their_fix() -> None:
    rng = np.random.default_rng(2)
    noisy = [list(rng.lognormal(0, 0.5, 20))]
    stats = summarise(noisy, 1)
    messages = latency_warnings(stats, noisy)
    assert any("high variation" in m and "budget_s" in m for m in messages)
    assert any("few samples: 20" in m for m in messages)
    steady = [[5.0 + 0.01 * (i % 3) for i in range(100)]]
    assert latency_warnings(summarise(steady, 1), steady) == []


def test_slow_start_detects_a_first_outlier_only() -> None:
    base = list(np.random.default_rng(3).normal(5, 0.05, 50))
    assert slow_start([50.0, *base])
    assert not slow_start([*base, 50.0])
    assert not slow_start(base)


def _processes(centre: float, count: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(rng.normal(centre * rng.normal(1, 0.01), centre * 0.03, 50)) for _ in range(count)]


def test_comparison_verdicts() -> None:
    base = _processes(10.0, 8, 1)
    assert compare_latency(base, _processes(10.0, 8, 2)).verdict in ("no change", "within noise")
    slower = compare_latency(base, _processes(12.0, 8, 3))
    assert slower.verdict == "regression" and slower.ratio == pytest.approx(1.2, rel=0.03)
    assert 1.05 < slower.ci95[0] <= slower.ratio <= slower.ci95[1]
    faster = compare_latency(base, _processes(8.0, 8, 4))
    assert faster.verdict == "improvement" and faster.ci95[1] < 0.95
    slightly = compare_latency(base, _processes(10.3, 8, 5), threshold=0.05)
    assert slightly.verdict in ("within noise", "no change")


def test_too_few_processes_are_inconclusive_and_say_how_many() -> None:
    result = compare_latency(_processes(10.0, 3, 1), _processes(20.0, 3, 2))
    assert result.verdict == "inconclusive" and result.p_value is None
    assert "run at least 4 per side" in result.detail
    assert min_attainable_p(3, 3) == pytest.approx(0.1) and min_attainable_p(4, 4) == pytest.approx(2 / 70)


def test_bootstrap_cost_is_bounded_by_condensing_large_processes() -> None:
    from harness.results.stats import BOOTSTRAP_MAX_POINTS, condensed

    rng = np.random.default_rng(0)
    big = rng.gamma(5.0, 0.2, 2_000_000)
    small = condensed(big)
    assert len(small) == BOOTSTRAP_MAX_POINTS
    assert np.median(small) == pytest.approx(np.median(big), rel=1e-3)
    assert condensed(big[:10]).tolist() == big[:10].tolist()
    lo, hi = hierarchical_bootstrap_ci([big, big * 1.01, big * 0.99], seed=0)
    assert lo < np.median(big) < hi
