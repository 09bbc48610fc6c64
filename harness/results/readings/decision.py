"""Which variant to ship, per model and device: one decision, computed once, that every renderer prints.

The rule: candidates are the measured variants whose parity gate passed and that meet the profile's
`[decide]` limits (size, peak memory, latency ratio, task metric over the reference's). They are ranked by the paired
ratio to the model's reference (`Result.versus`, measured in one process, alternated), the statistic
the harness trusts most; the reference itself stands at exactly 1. A candidate whose interval is not
wholly above another's cannot be told apart from the fastest on latency: those are tied, and a tie is
broken by artifact size, then peak memory, then the ratio itself. An interval that spans more than a factor
of `MAX_SPAN` and reaches the reference's latency (e.g. [0.00, 16488] from a pairing cut short) says
nothing about latency: such a variant is not ranked at all, since as a tie it would win on size with no
evidence it is not far slower, and the decision names it with the way to narrow it. A wide interval wholly
below 1 (three short paired processes' [0.10, 0.32]) still says the variant is faster than the
reference, and is ranked. Without paired ratios (pairing off)
the unpaired medians, over the reference's median, take their place, and the decision says it rests on
the weaker statistic: medians of separate processes carry the drift between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harness.results.readings.queries import accuracy_metric, measured, ordered_results
from harness.results.schema import DecisionRecord, RankedVariant, Result, RunRecord
from profiles.schema import Decide

Basis = Literal["paired", "unpaired median"]
TieBreak = Literal["size", "peak memory", "latency"]

MAX_SPAN = 2.0  # an interval over twice its lower bound at its upper, reaching 1, ranks nothing

RULE = (
    "per model and device: among variants whose parity gate passed, the lowest paired latency ratio to the "
    "reference; variants whose 95% intervals cannot be told apart from it are a tie, broken by size, then peak "
    "memory"
)


@dataclass(frozen=True)
class Candidate:
    """One passing variant as the decision ranked it: `ratio` to the reference with its interval (None
    where the comparison has none, e.g. too few paired processes)."""

    result: Result
    ratio: float
    interval: tuple[float, float] | None

    @property
    def bounds(self) -> tuple[float, float]:
        return self.interval if self.interval is not None else (self.ratio, self.ratio)

    @property
    def too_wide(self) -> bool:
        low, high = self.bounds
        return low <= 0 or (high > MAX_SPAN * low and high >= 1.0)

    def text(self) -> str:
        interval = f" [{self.interval[0]:.2f}, {self.interval[1]:.2f}]" if self.interval else " (no interval)"
        return f"{self.ratio:.2f}x{interval}"


@dataclass(frozen=True)
class Decision:
    model: str
    device: str
    reference: str | None
    basis: Basis | None  # None: no candidate
    chosen: Candidate | None
    tied: list[Candidate] = field(default_factory=list)  # the others that latency cannot separate from it
    tie_break: TieBreak | None = None
    ranked: list[Candidate] = field(default_factory=list)  # every candidate, lowest ratio first
    excluded: dict[str, str] = field(default_factory=dict)  # variant -> why it was no candidate

    @property
    def variant(self) -> str | None:
        return self.chosen.result.variant if self.chosen else None

    def record(self) -> DecisionRecord:
        """What the results file keeps of this decision."""
        return DecisionRecord(
            model=self.model,
            device=self.device,
            reference=self.reference,
            basis=self.basis,
            variant=self.variant,
            sentence=self.sentence(),
            tie_break=self.tie_break,
            ranked=[RankedVariant(c.result.variant, c.ratio, list(c.interval or ())) for c in self.ranked],
            tied=[c.result.variant for c in self.tied],
            excluded=dict(self.excluded),
        )

    def sentence(self) -> str:
        """E.g. `et-xnnpack-int8: 0.21x [0.21, 0.22], tied on latency with onnx-fp32 (0.20x [0.19, 0.20]),
        chosen for size 0.31x`; the ratios are to the reference."""
        if self.chosen is None:
            return "no variant to ship: " + (
                "; ".join(f"{v} {why}" for v, why in self.excluded.items()) or "nothing was measured"
            )
        words = f"{self.chosen.result.variant}: {self.chosen.text()} of {self.reference}"
        if self.basis == "unpaired median":
            words += " by unpaired medians (no paired ratio: a weaker basis than pairing)"
        if self.tied:
            others = ", ".join(f"{c.result.variant} ({c.text()})" for c in self.tied)
            words += f", tied on latency with {others}, chosen for {self._why()}"
        elif len(self.ranked) > 1:
            alone = self.chosen.interval is None
            words += ", fastest by its ratio alone (no interval: too few paired processes)" if alone else ", fastest"
        return words

    def _why(self) -> str:
        assert self.chosen is not None
        rival = min(self.tied, key=lambda c: c.ratio)
        if self.tie_break == "size":
            mine, theirs = self.chosen.result.artifact.size_bytes, rival.result.artifact.size_bytes
            return f"size {mine / theirs:.2f}x of {rival.result.variant}'s" if mine and theirs else "size"
        if self.tie_break == "peak memory":
            mine, theirs = self.chosen.result.memory.peak_rss_bytes, rival.result.memory.peak_rss_bytes
            return f"peak memory {mine / theirs:.2f}x of {rival.result.variant}'s" if mine and theirs else "memory"
        return "the lowest ratio (equal size and memory)"


def _paired(result: Result, reference: str | None) -> Candidate | None:
    comparison = result.versus
    if comparison is not None and comparison.against == reference:
        interval = (comparison.ci95[0], comparison.ci95[1]) if len(comparison.ci95) == 2 else None
        return Candidate(result, comparison.ratio, interval)
    if result.variant == reference:
        return Candidate(result, 1.0, (1.0, 1.0))
    return None


def _unpaired(result: Result, reference: Result | None) -> Candidate | None:
    lat, ref = result.latency_ms, reference.latency_ms if reference else None
    if lat is None or ref is None or ref.median <= 0:
        return None
    return Candidate(result, lat.median / ref.median, (lat.ci95[0] / ref.median, lat.ci95[1] / ref.median))


def _missing_last(value: int | None) -> float:
    return float("inf") if value is None else float(value)


def _over_limits(result: Result, reference: Result | None, limits: Decide) -> str | None:
    """Why a measured, passing variant is no candidate under the limits, or None."""
    size, peak = result.artifact.size_bytes, result.memory.peak_rss_bytes
    if limits.max_size_mb is not None and size is not None and size > limits.max_size_mb * 1e6:
        return f"over [decide] max_size_mb = {limits.max_size_mb:g} ({size / 1e6:.1f} MB)"
    if limits.max_peak_memory_mb is not None and peak is not None and peak > limits.max_peak_memory_mb * 1e6:
        return f"over [decide] max_peak_memory_mb = {limits.max_peak_memory_mb:g} ({peak / 1e6:.1f} MB)"
    ratio = result.versus.ratio if result.versus is not None else None
    if limits.max_latency_ratio is not None and ratio is not None and ratio > limits.max_latency_ratio:
        return f"over [decide] max_latency_ratio = {limits.max_latency_ratio:g} ({ratio:.2f}x)"
    mine, theirs = accuracy_metric(result), accuracy_metric(reference) if reference is not None else None
    if limits.min_accuracy_ratio is not None and mine and theirs and mine[0] == theirs[0] and theirs[1] > 0:
        relative = mine[1] / theirs[1]
        if relative < limits.min_accuracy_ratio:
            return f"under [decide] min_accuracy_ratio = {limits.min_accuracy_ratio:g} ({mine[0]} {relative:.3f}x)"
    return None


def decide_group(model: str, device: str, results: list[Result], limits: Decide | None = None) -> Decision:
    """The decision for one model on one device, from that group's results."""
    limits = limits or Decide()
    against = {r.versus.against for r in results if r.versus is not None}
    reference = sorted(against)[0] if against else None
    reference_result = next((r for r in results if r.variant == reference), None)
    excluded: dict[str, str] = {}
    passing: list[Result] = []
    for result in results:
        if not measured(result):
            excluded[result.variant] = result.status if result.status != "ok" else "not measured"
        elif result.parity is not None and not result.parity.passed:
            excluded[result.variant] = "failed its parity gate"
        elif (why := _over_limits(result, reference_result, limits)) is not None:
            excluded[result.variant] = why
        else:
            passing.append(result)
    basis: Basis = "paired"
    candidates = [c for c in (_paired(r, reference) for r in passing) if c is not None]
    if len(candidates) <= 1:  # nothing paired against the reference: fall back to the medians
        basis = "unpaired median"
        ref_result = next((r for r in results if r.variant == reference), None) if reference else None
        if ref_result is None or not measured(ref_result):
            ref_result = min(passing, key=lambda r: r.latency_ms.median) if passing else None  # type: ignore[union-attr]
        reference = ref_result.variant if ref_result else None
        candidates = [c for c in (_unpaired(r, ref_result) for r in passing) if c is not None]
    else:
        for result in passing:
            if all(c.result is not result for c in candidates):
                excluded[result.variant] = f"not paired with {reference}"
    for wide in [c for c in candidates if c.too_wide]:
        candidates.remove(wide)
        excluded[wide.result.variant] = f"interval {wide.text()} too wide to rank: a longer [paired] max_s narrows it"
    if not candidates:
        return Decision(model, device, reference, None, None, excluded=excluded)
    ranked = sorted(candidates, key=lambda c: c.ratio)
    fastest_high = min(c.bounds[1] for c in ranked)
    tie = [c for c in ranked if c.bounds[0] <= fastest_high]  # not wholly slower than any candidate
    chosen = min(
        tie,
        key=lambda c: (
            _missing_last(c.result.artifact.size_bytes),
            _missing_last(c.result.memory.peak_rss_bytes),
            c.ratio,
        ),
    )
    tied = [c for c in tie if c is not chosen]
    tie_break: TieBreak | None = None
    if tied:
        sizes = {c.result.artifact.size_bytes for c in tie}
        memories = {c.result.memory.peak_rss_bytes for c in tie}
        tie_break = "size" if len(sizes) > 1 else "peak memory" if len(memories) > 1 else "latency"
    return Decision(model, device, reference, basis, chosen, tied, tie_break, ranked, excluded)


def decide(record: RunRecord) -> list[Decision]:
    """One decision per model and device of a run, in the profile's order."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in ordered_results(record):
        groups.setdefault((result.model, result.device), []).append(result)
    limits = record.profile.profile.decide
    return [decide_group(model, device, results, limits) for (model, device), results in groups.items()]
