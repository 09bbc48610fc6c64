from __future__ import annotations

import numpy as np
import pytest

from harness.stats import hierarchical_bootstrap_ci, latency_warnings, slow_start, summarise, tukey_outliers


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
