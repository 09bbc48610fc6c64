"""Which variant to ship, per model and device: one decision, computed once, that every renderer prints.

The rule: candidates are the measured variants whose parity gate passed. They are ranked by the paired
ratio to the model's reference (`Result.versus`, measured in one process, alternated), the statistic
the harness trusts most; the reference itself stands at exactly 1. A candidate whose interval is not
wholly above another's cannot be told apart from the fastest on latency: those are tied, and a tie is
broken by artifact size, then peak memory, then the ratio itself. Without paired ratios (pairing off)
the unpaired medians, over the reference's median, take their place, and the decision says it rests on
the weaker statistic: medians of separate processes carry the drift between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harness.results.schema import Result, RunRecord
from reports.summary import accuracy_metric, measured, ordered_results

Basis = Literal["paired", "unpaired median"]
TieBreak = Literal["size", "peak memory", "latency"]

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


def decide_group(model: str, device: str, results: list[Result]) -> Decision:
    """The decision for one model on one device, from that group's results."""
    excluded: dict[str, str] = {}
    passing: list[Result] = []
    for result in results:
        if not measured(result):
            excluded[result.variant] = result.status if result.status != "ok" else "not measured"
        elif result.parity is not None and not result.parity.passed:
            excluded[result.variant] = "failed its parity gate"
        else:
            passing.append(result)
    against = {r.versus.against for r in results if r.versus is not None}
    reference = sorted(against)[0] if against else None
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
    return [decide_group(model, device, results) for (model, device), results in groups.items()]


@dataclass(frozen=True)
class ParetoPoint:
    """A measured case on the three axes a shipping choice trades: latency ratio to the reference
    (paired where it was, else medians), artifact size, and the task metric (`accuracy_metric`)."""

    result: Result
    ratio: float
    size: int
    metric: str
    value: float
    on_front: bool


def pareto_points(results: list[Result]) -> list[ParetoPoint]:
    """Every measured case with a size and a task metric, marked on the front when no other case is at
    least as fast, as small and as accurate, and better in one. Cases with another metric than the
    first case's are left out (no common axis)."""
    rows: list[tuple[Result, float, int, str, float]] = []
    medians = {(r.device, r.variant): r.latency_ms.median for r in results if measured(r)}  # type: ignore[union-attr]
    against = {r.device: r.versus.against for r in results if r.versus is not None}
    for result in results:
        metric = accuracy_metric(result)
        if not measured(result) or metric is None or not result.artifact.size_bytes:
            continue
        reference = against.get(result.device)
        if result.versus is not None:
            ratio = result.versus.ratio
        elif result.variant == reference:
            ratio = 1.0
        elif (result.device, reference) in medians:
            ratio = result.latency_ms.median / medians[(result.device, reference)]  # type: ignore[union-attr]
        else:
            ratio = result.latency_ms.median / min(medians.values())  # type: ignore[union-attr]
        rows.append((result, ratio, result.artifact.size_bytes, *metric))
    rows = [row for row in rows if row[3] == rows[0][3]] if rows else []

    def dominates(a: tuple[Result, float, int, str, float], b: tuple[Result, float, int, str, float]) -> bool:
        no_worse = a[1] <= b[1] and a[2] <= b[2] and a[4] >= b[4]
        return no_worse and (a[1] < b[1] or a[2] < b[2] or a[4] > b[4])

    return [ParetoPoint(*row, not any(dominates(other, row) for other in rows)) for row in rows]
