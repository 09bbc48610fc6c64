"""The parent side of paired measurement: paired processes, one after another, until every comparison is
decided (and, with a precision goal, its interval narrow enough) or the budget is spent. Several series
(one per model in `bench run`) take turns and share one budget (`run_series`).

One series compares one arm A (the reference, or the baseline's artifact) with one or more arms B. Each
process loads all arms still open; an arm leaves the series once its verdict is decided (and its
interval within the precision goal, when the profile sets one: a team choosing a variant wants the
ratio, a CI gate only the verdict), so the processes get lighter as it goes. The reference's noise
enters every ratio of the series, so it runs about sqrt(K) blocks for each contender's one
(`harness.pairing.worker.reference_share`): with one reference block per half-round, the part of the
per-process spread that all ratios share (the reference's) outweighed each contender's own
(`docs/measurement.md`). The creation order is mirrored from one process to the next (a seeded random
order, then its reverse, ...), so every pair of arms meets in both orders equally often.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.pairing.sequential import FAST_THIRD_STATISTIC, LOOKS, PROCESS_STATISTICS, ROUNDS_STATISTIC, decide
from harness.pairing.worker import Arm, PairedPlan, measure_paired, reference_share
from harness.process.executor import LOCAL, Executor, Job
from harness.process.isolation import PAIRED_TEMPLATE, WorkerOutcome
from harness.process.messages import PairedMeasured, PairedRefused
from harness.results.schema import PairedComparison, PairedProcess, ProcessTiming, Statistic
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
    lead_in_ms: float = (
        0.0  # untimed calls before each block (harness.pairing.worker): comparisons of different variants
    )
    statistic: Statistic = ROUNDS_STATISTIC  # per process (harness.pairing.sequential.PROCESS_STATISTICS)


def pairing_settings(profile: Profile, across_variants: bool) -> PairingSettings:
    """The profile's pairing. Comparisons of different variants (not two builds of one) get a lead-in and
    the fastest-third statistic (harness.pairing.sequential says why)."""
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


class Series:
    """Each contender B against `reference` A, one paired process per `step`, until every contender is
    decided (and precise) or the series is closed."""

    def __init__(
        self,
        reference: Arm,
        contenders: dict[Hashable, Arm],
        against: str,
        settings: PairingSettings,
        log_path: Path | None = None,
        label: str = "",
        executor: Executor = LOCAL,
    ) -> None:
        self.reference = reference
        self.executor = executor
        self.against = against
        self.settings = settings
        self.log_path = log_path
        self.label = label
        self.open_arms = {key: _Open(arm) for key, arm in contenders.items()}
        self.results: dict[Hashable, PairedComparison] = {}
        self.rng = np.random.default_rng([settings.seed, 0x9A1D])
        self.order: tuple[int, ...] = ()
        self.processes = 0
        self.elapsed_s = 0.0  # in its processes, start to end
        self.last_s = 0.0  # its last process: the next loads no more arms, so it takes about as long
        self.timings: list[ProcessTiming] = []  # one per paired process, for the run's time breakdown

    def _time(self, outcome: WorkerOutcome) -> None:
        measured = outcome.first(PairedMeasured)
        startup, sampling = None, 0.0
        if measured is not None:
            startup = measured.load_at - outcome.spawned_at if measured.load_at else None
            sampling = sum(sum(b) * c for b, c in zip(measured.blocks_ms, measured.calls, strict=True)) / 1e3
        self.timings.append(ProcessTiming("paired", self.label, outcome.wall_s, startup, sampling))

    def step(self) -> None:
        """One paired process of the arms still open; then every one of them decided at a look (or, at the
        last look, finally) leaves the series."""
        settings = self.settings
        keys = list(self.open_arms)
        arms = (self.reference, *(self.open_arms[k].arm for k in keys))
        self.order = creation_order(len(arms), self.processes, self.rng, self.order)
        shares = reference_share(len(keys))
        plan = PairedPlan(
            arms=arms,
            budget_s=settings.arm_s * (len(keys) + shares),
            min_block_ms=settings.min_block_ms,
            warmup=settings.warmup,
            threads=settings.threads,
            created=self.order,
            seed=int(self.rng.integers(2**32)),
            lead_in_ms=settings.lead_in_ms,
            reference_blocks=shares,
        )
        began = time.monotonic()
        job = Job(
            measure_paired,
            (plan,),
            settings.timeout_s,
            self.log_path,
            exit_at_once=True,
            preload=PAIRED_TEMPLATE,
            device=self.reference.spec.device,
            measuring=True,
        )
        outcome = self.executor.run(job)
        self.last_s = time.monotonic() - began
        self.elapsed_s += self.last_s
        self._time(outcome)
        refused = outcome.first(PairedRefused)
        if refused is not None:
            self.leave_out(keys, refused)
            return
        measured = outcome.first(PairedMeasured)
        if measured is None:
            reason = f"paired process {outcome.failure or 'sent no result'}"
            self.close(reason + (f" (log: {self.log_path})" if self.log_path else ""))
            return
        self.processes += 1
        statistic = PROCESS_STATISTICS[settings.statistic]
        for position, key in enumerate(keys, start=1):
            a_ms, b_ms = measured.blocks_ms[0], measured.blocks_ms[position]
            a_first = measured.created.index(0) < measured.created.index(position)
            self.open_arms[key].processes.append(
                PairedProcess(
                    a_ms=a_ms,
                    b_ms=b_ms,
                    calls=[measured.calls[0], measured.calls[position]],
                    created_first="a" if a_first else "b",
                    log_ratio=statistic(a_ms, b_ms),
                    lead_in=[measured.lead_in[0], measured.lead_in[position]],
                )
            )
        final = self.processes >= LOOKS[-1]
        for key in keys:
            series = self.open_arms[key]
            decision = decide(
                [p.log_ratio for p in series.processes],
                [p.created_first == "a" for p in series.processes],
                settings.threshold,
                final=final,
            )
            if (decision.decided and precise(decision.ci95, settings.precision)) or final:
                self.results[key] = _finished(self.open_arms.pop(key), self.against, settings)

    def leave_out(self, keys: list[Hashable], refused: PairedRefused) -> None:
        """An arm the paired worker could not pair leaves the series with the reason, and the others go on;
        without its reference, the whole series closes with that reason."""
        if refused.arm == 0:
            self.close(f"the reference left out of pairing: {refused.reason}")
            return
        key = keys[refused.arm - 1]
        failure = f"left out of pairing: {refused.reason}"
        self.results[key] = _finished(self.open_arms.pop(key), self.against, self.settings, failure)

    def close(self, failure: str | None = None) -> None:
        """Every open contender's verdict now, on the processes it has: a stop between two looks is read
        as one more look (harness.pairing.sequential). A `failure` (a paired process that failed) is kept on
        each comparison: the caller treats it as an error, never as an inconclusive verdict."""
        for key in list(self.open_arms):
            self.results[key] = _finished(self.open_arms.pop(key), self.against, self.settings, failure)


def run_series(series: list[Series], budget_s: float, after: Callable[[Series], None] | None = None) -> None:
    """The series' processes, interleaved, until all are done or `budget_s` (wall clock) is spent. The next
    process always goes to the open series with the least time so far: the series share the budget
    evenly while all are open, and one that needs more (a model whose ratios spread more) takes what the
    others left; and the processes of one series are spread over the whole phase, so a noisy minute of
    the host lands on a few processes of several series rather than on a run of one series' processes.
    A series whose next process would not end within the budget is closed. `after(series)` follows every
    process and every closing."""
    started = time.monotonic()
    while live := [s for s in series if s.open_arms]:
        turn = min(live, key=lambda s: s.elapsed_s)
        if time.monotonic() - started + turn.last_s > budget_s:
            turn.close()
        else:
            turn.step()
        if after:
            after(turn)


def compare_series(
    reference: Arm,
    contenders: dict[Hashable, Arm],
    against: str,
    settings: PairingSettings,
    log_path: Path | None = None,
    on_process: Callable[[Series], None] | None = None,
    executor: Executor = LOCAL,
) -> dict[Hashable, PairedComparison]:
    """Each contender B against `reference` A, within `settings.max_s`; `on_process` as `run_series`'s `after`."""
    series = Series(reference, contenders, against, settings, log_path, executor=executor)
    run_series([series], settings.max_s, on_process)
    return series.results


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
        failure=failure,
    )
