"""The parent side of paired measurement: paired processes, one after another, until every comparison is
decided (and, with a precision goal, its interval narrow enough) or the budget is spent.

One series compares one arm A (the reference, or the baseline's artifact) with one or more arms B. Each
process loads all arms still open; an arm leaves the series once its verdict is decided (and its
interval within the precision goal, when the profile sets one: a team choosing a variant wants the
ratio, a CI gate only the verdict), so the processes get lighter as it goes. The reference's noise
enters every ratio of the series, so it runs about sqrt(K) blocks for each contender's one
(`harness.paired.reference_share`): in seven-arm resnet18 processes with one reference block per
half-round, the part of the per-process spread that all six ratios shared (the reference's) was 1.85 %,
against about 1 % that was each contender's own. The creation order is mirrored from one process to
the next (a seeded random order, then its reverse, ...), so every pair of arms meets in both orders
equally often.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.isolation import run_isolated
from harness.messages import PairedMeasured
from harness.paired import Arm, PairedPlan, measure_paired, reference_share
from harness.schema import PairedComparison, PairedProcess
from harness.sequential import FAST_THIRD_STATISTIC, LOOKS, PROCESS_STATISTICS, ROUNDS_STATISTIC, decide
from profiles.schema import Profile


@dataclass(frozen=True)
class PairingSettings:
    threshold: float  # fraction: 0.01 is 1 %
    arm_s: float  # sampling seconds each arm gets in one process
    max_s: float  # wall-clock budget of the whole series, process start-up included
    min_block_ms: float
    warmup: int
    threads: int
    timeout_s: float  # one process
    seed: int
    precision: float | None = None  # fraction: keep a decided arm until its interval is within +/- this
    lead_in_ms: float = 0.0  # untimed calls before each block (harness.paired): comparisons of different variants
    statistic: str = ROUNDS_STATISTIC  # per process (harness.sequential.PROCESS_STATISTICS)


def pairing_settings(profile: Profile, across_variants: bool) -> PairingSettings:
    """The profile's pairing. Comparisons of different variants (not two builds of one) get a lead-in and
    the fastest-third statistic (harness.sequential says why)."""
    measure, paired = profile.measure, profile.paired
    return PairingSettings(
        threshold=paired.threshold_pct / 100,
        arm_s=paired.arm_s,
        max_s=paired.max_s,
        min_block_ms=measure.min_sample_ms,
        warmup=measure.warmup,
        threads=measure.threads,
        timeout_s=measure.timeout_s,
        seed=measure.seed,
        precision=paired.precision_pct / 100 if paired.precision_pct else None,
        lead_in_ms=paired.lead_in_ms if across_variants else 0.0,
        statistic=FAST_THIRD_STATISTIC if across_variants else ROUNDS_STATISTIC,
    )


@dataclass
class _Open:
    arm: Arm
    processes: list[PairedProcess] = field(default_factory=list)


def creation_order(arms: int, index: int, rng: np.random.Generator, previous: tuple[int, ...]) -> tuple[int, ...]:
    """A random order for even process indices, the mirror of the previous one for odd ones."""
    if index % 2 and len(previous) == arms:
        return previous[::-1]
    return tuple(int(i) for i in rng.permutation(arms))


def compare_series(
    reference: Arm,
    contenders: dict[Hashable, Arm],
    against: str,
    settings: PairingSettings,
    log_path: Path | None = None,
    on_process: Callable[[int, int], None] | None = None,
) -> dict[Hashable, PairedComparison]:
    """Each contender B against `reference` A. `on_process(done, open)` after every process."""
    open_arms = {key: _Open(arm) for key, arm in contenders.items()}
    results: dict[Hashable, PairedComparison] = {}
    statistic = PROCESS_STATISTICS[settings.statistic]
    rng = np.random.default_rng([settings.seed, 0x9A1D])
    started = time.monotonic()
    order: tuple[int, ...] = ()
    index = 0
    while open_arms:
        keys = list(open_arms)
        arms = (reference, *(open_arms[k].arm for k in keys))
        order = creation_order(len(arms), index, rng, order if len(order) == len(arms) else ())
        shares = reference_share(len(keys))
        plan = PairedPlan(
            arms=arms,
            budget_s=settings.arm_s * (len(keys) + shares),
            min_block_ms=settings.min_block_ms,
            warmup=settings.warmup,
            threads=settings.threads,
            created=order,
            seed=int(rng.integers(2**32)),
            lead_in_ms=settings.lead_in_ms,
            reference_blocks=shares,
        )
        began = time.monotonic()
        outcome = run_isolated(measure_paired, (plan,), settings.timeout_s, None, log_path, exit_at_once=True)
        last_s = time.monotonic() - began
        measured = outcome.first(PairedMeasured)
        if measured is None:
            reason = f"paired process {outcome.failure or 'sent no result'}"
            reason += f" (log: {log_path})" if log_path else ""
            for key in keys:
                results[key] = _finished(open_arms.pop(key), against, settings, reason)
            break
        index += 1
        for position, key in enumerate(keys, start=1):
            a_ms, b_ms = measured.blocks_ms[0], measured.blocks_ms[position]
            a_first = measured.created.index(0) < measured.created.index(position)
            open_arms[key].processes.append(
                PairedProcess(
                    a_ms=a_ms,
                    b_ms=b_ms,
                    calls=[measured.calls[0], measured.calls[position]],
                    created_first="a" if a_first else "b",
                    log_ratio=statistic(a_ms, b_ms),
                    lead_in=[measured.lead_in[0], measured.lead_in[position]],
                )
            )
        # the next process loads no more arms than this one: stop when it would not end within the budget
        out_of_budget = time.monotonic() - started + last_s > settings.max_s or index >= LOOKS[-1]
        for key in keys:
            series = open_arms[key]
            decision = decide(
                [p.log_ratio for p in series.processes],
                [p.created_first == "a" for p in series.processes],
                settings.threshold,
                final=out_of_budget,
            )
            if (decision.decided and precise(decision.ci95, settings.precision)) or out_of_budget:
                results[key] = _finished(open_arms.pop(key), against, settings)
        if on_process:
            on_process(index, len(open_arms))
    return results


def relative_half_width(ci95: list[float]) -> float:
    """Half an interval of a ratio, relative to its (geometric) centre: 0.03 is +/-3 %."""
    return math.sqrt(ci95[1] / ci95[0]) - 1


def precise(ci95: list[float], precision: float | None) -> bool:
    """Whether the interval's half-width, relative to its centre, is within `precision` (None: no goal)."""
    if precision is None:
        return True
    return bool(ci95) and relative_half_width(ci95) <= precision


def _finished(series: _Open, against: str, settings: PairingSettings, failure: str | None = None) -> PairedComparison:
    threshold, precision = settings.threshold, settings.precision
    decision = decide(
        [p.log_ratio for p in series.processes],
        [p.created_first == "a" for p in series.processes],
        threshold,
        final=True,
    )
    detail = f"{failure}; {decision.detail}" if failure else decision.detail
    if decision.decided and not precise(decision.ci95, precision):
        width = relative_half_width(decision.ci95)
        detail += f"; the series ended with the interval at +/-{width:.1%}, wider than the goal +/-{precision:.1%}"
    return PairedComparison(
        against=against,
        ratio=decision.ratio,
        ci95=decision.ci95,
        verdict=decision.verdict,
        threshold=threshold,
        detail=detail,
        statistic=settings.statistic,
        processes=series.processes,
    )
