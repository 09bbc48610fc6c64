"""The paired verdict: from per-process log-ratios to regression, improvement, no change or inconclusive.

Per process, the statistic is the median over rounds of the log-ratio of B's to A's mean block time in
that round (`process_log_ratio`). The validation study favours it over the log-ratio of the two arms'
medians: its spread over A/A processes is smaller (`docs/measurement.md`). A round's blocks sit next to
each other in time, so a burst of a neighbour that lands on a few blocks moves a few rounds, and the
median drops them, where a median over each arm's blocks alone shifts when a burst hits one arm's
blocks more than the other's.

Between different variants (the vs-reference column, `bench ab`) the statistic is instead the log-ratio of
the mean of the fastest third of each arm's blocks (`fast_third_log_ratio`). Interference from a shared
host hits two runtimes unequally (one runtime's blocks slow down for a few processes while the other's
hold), so it does not cancel in a round's ratio. Interference only ever adds time, so the fastest
blocks of an arm are those it missed (BenchmarkTools.jl and conbench take the minimum for this reason);
a third rather than the single fastest block, whose value among many blocks of a fast arm wanders.
Recomputed from stored blocks, it narrowed the per-process spread of the vs-reference ratios of each
of the four models tried (`docs/measurement.md` has the figures). Two builds of one variant (the baseline gate, the
validation study) keep the median of per-round ratios: interference hits both alike, and that is the
statistic the study validated.

Across processes, the mean log-ratio and its t interval, with the creation order taken out: the
second-created of two sessions runs a little faster than the first (`docs/measurement.md`), so the
parent mirrors the order from one process to the next, and the estimate is the average of the two
order groups' means with their pooled spread (df = n - 2). The order effect then neither biases the
mean (the looks fall on even counts, where the groups are equal) nor widens the interval.

The verdict, with the threshold t on either side: `regression` when the interval lies wholly above
log(1 + t), `improvement` wholly below -log(1 + t), `no change` wholly inside (an equivalence
statement: the change is smaller than t, with the stated confidence), else `inconclusive`.

Sequential looks. Paired processes are added until the verdict is decided or the comparison's budget
is spent, and the verdict is read only at fixed numbers of processes (`LOOKS`). Every look uses the
interval at level 1 - alpha/K, K the number of looks (Bonferroni). Why this and not alpha spending:
a wrong verdict at any look needs that look's interval to miss the true ratio, and by the union bound
the chance that any of K intervals misses is at most K * alpha/K = alpha, whatever the correlation
between looks and whenever the budget stops the series (a stop between two looks is read as one more
look, replacing those not taken). It is conservative, since the looks are strongly correlated, which
costs a few processes; an O'Brien-Fleming spending function would decide later at the early looks,
where the cheap decisions (a large regression at the first look) are made.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.results.schema import FAST_THIRD_STATISTIC, ROUNDS_STATISTIC, Statistic, Verdict

LOOKS = (6, 8, 10, 12, 16, 20, 24)
ALPHA = 0.05  # the chance of a wrong verdict over all looks together
VERDICTS: tuple[Verdict, ...] = ("regression", "improvement", "no change", "inconclusive")


def half_rounds(a_ms: Sequence[float], b_ms: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The blocks of one paired process by half-round: A's as (half-rounds, m), B's as (half-rounds,). B
    has one block per half-round (a half-round and its mirror make a round); A, the reference, one or,
    compared with several arms at once, m (`harness.pairing.worker.reference_share`)."""
    a, b = np.asarray(a_ms, dtype=float), np.asarray(b_ms, dtype=float)
    halves = 2 * (len(b) // 2)
    if halves == 0 or len(a) < halves:
        raise ValueError("a paired process needs at least one round of blocks")
    share = len(a) // halves
    return a[: share * halves].reshape(halves, share), b[:halves]


def round_log_ratios(a_ms: Sequence[float], b_ms: Sequence[float]) -> np.ndarray:
    """log(B/A) of each round of one paired process, from the arms' mean block time in the round."""
    a, b = half_rounds(a_ms, b_ms)
    rounds = len(b) // 2
    return np.log(b.reshape(rounds, 2).mean(axis=1) / a.reshape(rounds, -1).mean(axis=1))


def process_log_ratio(a_ms: Sequence[float], b_ms: Sequence[float]) -> float:
    """log(B/A) of one paired process: the median over its rounds."""
    return float(np.median(round_log_ratios(a_ms, b_ms)))


def fastest_third(blocks_ms: np.ndarray) -> np.ndarray:
    """The mean of the fastest third of the blocks, per column."""
    kept = max(1, round(len(blocks_ms) / 3))
    return np.sort(blocks_ms, axis=0)[:kept].mean(axis=0)


def fast_third_log_ratio(a_ms: Sequence[float], b_ms: Sequence[float]) -> float:
    """log(B/A) of one paired process from the fastest third of each arm's blocks. A reference with m
    blocks per half-round is read as m slots (its first, second, ... block of each half-round), each with
    as many blocks as B, and their logs averaged: a third of fewer blocks sits higher (6 normal samples
    against 18: by 0.09 sd), so A = B reads 0 only when both sides take it over equal counts."""
    slots, b = half_rounds(a_ms, b_ms)
    return float(np.log(fastest_third(b)) - np.mean(np.log(fastest_third(slots))))


PROCESS_STATISTICS: dict[Statistic, Callable[[Sequence[float], Sequence[float]], float]] = {
    ROUNDS_STATISTIC: process_log_ratio,
    FAST_THIRD_STATISTIC: fast_third_log_ratio,
}


@dataclass
class Decision:
    ratio: float  # B/A, exp of the mean log-ratio
    ci95: list[float]  # the simultaneous interval (over the looks) of B/A; empty before the first look
    verdict: Verdict
    processes: int
    detail: str
    decided: bool


def _t_quantile(q: float, df: int) -> float:
    from scipy import stats as sps  # imported here: scipy.stats costs the CLI 0.8 s at start

    return float(sps.t.ppf(q, df))


def half_width(sd: float, n: int, alpha: float = ALPHA, looks: Sequence[int] = LOOKS) -> float:
    """Half the interval of an order-adjusted mean log-ratio over `n` processes at the per-look level."""
    return _t_quantile(1 - alpha / (2 * len(looks)), n - 2) * sd / math.sqrt(n)


def processes_to_decide(
    mean: float, sd: float, n: int, threshold: float, alpha: float = ALPHA, looks: Sequence[int] = LOOKS
) -> int | None:
    """The fewest processes (a look beyond `n`) whose interval would decide, if the mean and spread hold;
    None when no look of the schedule would (the ratio sits on the threshold)."""
    margin = abs(abs(mean) - math.log1p(threshold))
    for look in looks:
        if look > n and half_width(sd, look, alpha, looks) < margin:
            return look
    return None


def order_adjusted(log_ratios: Sequence[float], a_first: Sequence[bool]) -> tuple[float, float, int]:
    """(mean, sd, df): the mean of the two creation-order groups' means and the pooled sd, so that the
    standard error is sd/sqrt(n) for balanced groups; plain mean and sd where a group is empty."""
    values = np.asarray(log_ratios, dtype=float)
    first = np.asarray(a_first, dtype=bool)
    groups = [values[first], values[~first]]
    n = len(values)
    if min(len(g) for g in groups) == 0 or n < 3:
        return float(values.mean()), float(values.std(ddof=1)) if n > 1 else 0.0, n - 1
    mean = float(np.mean([g.mean() for g in groups]))
    pooled = math.sqrt(sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / (n - 2))
    scale = math.sqrt(n * sum(1 / len(g) for g in groups) / 4)  # 1 when balanced
    return mean, pooled * scale, n - 2


def decide(
    log_ratios: Sequence[float],
    a_first: Sequence[bool],
    threshold: float,
    final: bool = False,
    alpha: float = ALPHA,
    looks: Sequence[int] = LOOKS,
) -> Decision:
    """The verdict after these processes (`a_first[i]`: A was created first in process i). Before the
    first look, or between looks unless `final` (the budget is spent), it is `inconclusive`, undecided."""
    n = len(log_ratios)
    mean = float(np.mean(log_ratios)) if n else 0.0
    if n < 2 or (n not in looks and not final):
        more = f"{looks[0] - n} more processes" if n < looks[0] else "the next look"
        return Decision(math.exp(mean), [], "inconclusive", n, f"waiting for {more}", False)
    mean, sd, df = order_adjusted(log_ratios, a_first)
    half = _t_quantile(1 - alpha / (2 * len(looks)), df) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    bound = math.log1p(threshold)
    ci = [math.exp(lo), math.exp(hi)]
    where = f"{n} processes, {1 - alpha:.0%} over {len(looks)} looks"
    if lo > bound:
        return Decision(math.exp(mean), ci, "regression", n, f"interval above +{threshold:.1%} ({where})", True)
    if hi < -bound:
        return Decision(math.exp(mean), ci, "improvement", n, f"interval below -{threshold:.1%} ({where})", True)
    if -bound < lo and hi < bound:
        return Decision(math.exp(mean), ci, "no change", n, f"interval inside +/-{threshold:.1%} ({where})", True)
    needed = processes_to_decide(mean, sd, n, threshold, alpha, looks)
    if needed is None:
        advice = (
            f"at this spread ({sd:.2%} per process) even {looks[-1]} processes would not decide it; "
            "quieten the machine or raise the threshold"
        )
    else:
        advice = f"about {needed - n} more processes ({needed} in all) would decide it if the spread holds"
    return Decision(math.exp(mean), ci, "inconclusive", n, f"interval straddles +/-{threshold:.1%}: {advice}", False)
