"""`bench compare`: a baseline run against a current one, case by case, with the comparison core.

A case regresses when its latency verdict is `regression`, its artifact grew, its peak memory grew past
the tolerance, its parity gate newly failed, or it newly failed to run. Anything else is reported and
passes, so a gate built on this stays quiet when nothing changed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.results.schema import PairedComparison, Result, RunRecord
from harness.results.stats import Comparison, compare_latency
from profiles.errors import SchemaError
from reports.markdown import md_escape

CHECKED_ENVIRONMENT = ("hostname", "os", "machine", "cpu", "cores", "python")
CHECKED_PACKAGES = ("ondevice-bench", "torch", "onnx", "onnxruntime", "coremltools")


@dataclass
class CaseChange:
    model: str
    variant: str
    device: str
    backend: str
    presence: str  # "both" | "new" | "missing"
    latency: Comparison | None = None
    size: tuple[int | None, int | None] = (None, None)
    memory: tuple[int | None, int | None] = (None, None)
    parity: str = "-"
    regressions: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.model} {self.variant} {self.device} ({self.backend})"


def check_latencies(run: RunRecord, source: str) -> None:
    """`SchemaError` naming the file and case of the first latency that is not a positive, finite number
    of milliseconds: a time cannot be zero or negative, and a ratio taken of one would be a verdict on
    an edited or broken file, not on a build."""
    for result in run.results:
        figures = [value for process in result.samples_ms for value in process]
        if result.latency_ms is not None:
            figures += [result.latency_ms.median, result.latency_ms.min]
        bad = next((value for value in figures if not (value > 0 and math.isfinite(value))), None)
        if bad is not None:
            case = f"{result.model} {result.variant} {result.device} ({result.backend})"
            raise SchemaError(
                f"{source}: {case}: latency {bad:g} ms; every latency must be a positive number of milliseconds"
            )


def environment_differences(baseline: RunRecord, current: RunRecord) -> list[str]:
    """The environment keys whose values differ, as `key: before -> after`."""
    before, after = asdict(baseline.environment), asdict(current.environment)
    differences = [f"{k}: {before.get(k)} -> {after.get(k)}" for k in CHECKED_ENVIRONMENT if before[k] != after[k]]
    for name in CHECKED_PACKAGES:
        old, new = before["packages"].get(name), after["packages"].get(name)
        if old != new:
            differences.append(f"packages.{name}: {old} -> {new}")
    return differences


def _parity_change(base: Result, cur: Result) -> tuple[str, str | None]:
    if cur.parity is None:
        return "-", None
    if cur.parity.passed:
        return ("fixed" if base.parity is not None and not base.parity.passed else "held"), None
    if base.parity is not None and not base.parity.passed:
        return "still failing", None
    return "newly failed", "newly failed parity gate: " + "; ".join(cur.parity.failures)


def paired_latency(comparison: PairedComparison) -> Comparison:
    """A paired comparison in the shape every compare renderer reads."""
    return Comparison(comparison.ratio, comparison.ci95, None, comparison.verdict, f"paired: {comparison.detail}")


def compare_case(
    base: Result, cur: Result, threshold: float, memory_tolerance: float, seed: int, paired: bool = False
) -> CaseChange:
    """With `paired`, latency is the current case's paired comparison with the baseline's artifact
    (`Result.against_baseline`, measured in one process); else the unpaired test of the two runs."""
    change = CaseChange(cur.model, cur.variant, cur.device, cur.backend, "both")
    if base.status == "ok" and cur.status == "failed":
        change.regressions.append(f"now fails: {cur.reason}")
    if paired:
        change.latency = paired_latency(cur.against_baseline) if cur.against_baseline else None
        if cur.against_baseline is not None and cur.against_baseline.failure:
            change.regressions.append(f"pairing with the baseline failed: {cur.against_baseline.failure}")
    elif base.samples_ms and cur.samples_ms:
        change.latency = compare_latency(base.samples_ms, cur.samples_ms, threshold=threshold, seed=seed)
    if change.latency is not None and change.latency.verdict == "regression":
        lo, hi = change.latency.ci95
        change.regressions.append(
            f"latency {change.latency.ratio:.3f}x [95% CI {lo:.3f}, {hi:.3f}] ({change.latency.detail})"
        )
    change.size = (base.artifact.size_bytes, cur.artifact.size_bytes)
    if None not in change.size and change.size[1] > change.size[0]:  # type: ignore[operator]
        change.regressions.append(f"artifact grew {change.size[0]} -> {change.size[1]} bytes")
    change.memory = (base.memory.peak_rss_bytes, cur.memory.peak_rss_bytes)
    if None not in change.memory and change.memory[1] > change.memory[0] * (1 + memory_tolerance):  # type: ignore[operator]
        grew = change.memory[1] / change.memory[0] - 1  # type: ignore[operator]
        change.regressions.append(f"peak memory +{grew:.0%} (tolerance {memory_tolerance:.0%})")
    change.parity, parity_regression = _parity_change(base, cur)
    if parity_regression:
        change.regressions.append(parity_regression)
    return change


def compare_runs(
    baseline: RunRecord,
    current: RunRecord,
    threshold: float = 0.05,
    memory_tolerance: float = 0.10,
    seed: int = 0,
    paired: bool = False,
) -> list[CaseChange]:
    """Cases matched by model, variant, device and backend; unmatched ones are listed as new or missing."""
    before = {r.case_key: r for r in baseline.results}
    after = {r.case_key: r for r in current.results}
    changes = []
    for key, cur in after.items():
        base = before.get(key)
        if base is None:
            changes.append(CaseChange(*key, presence="new"))
        else:
            changes.append(compare_case(base, cur, threshold, memory_tolerance, seed, paired))
    changes += [CaseChange(*key, presence="missing") for key in before if key not in after]
    return changes


def _latency_text(change: CaseChange) -> str:
    """The ratio and its interval; "no ratio" for a comparison without one (no paired process ran)."""
    if change.latency is None:
        return "-"
    if len(change.latency.ci95) != 2 or not math.isfinite(change.latency.ratio):
        return "no ratio"
    lo, hi = change.latency.ci95
    return f"{change.latency.ratio:.3f}x [{lo:.3f}, {hi:.3f}]"


def _delta(pair: tuple[int | None, int | None]) -> str:
    before, after = pair
    if before is None or after is None:
        return "-"
    if before == after:
        return "same"
    return f"{after / before - 1:+.1%}" if before else f"{before} -> {after}"


UNPAIRED_NOTE = (
    "note: an unpaired comparison of two runs is the weaker test: each process's speed wanders 3-15 % on a "
    "shared machine and all of it lands in the comparison; `bench run --baseline` pairs the two builds in one "
    "process and sees changes of 1-2 %"
)


def render_comparison(changes: list[CaseChange], console: Console, title: str = "baseline -> current") -> None:
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in ("case", "latency ratio [95% CI]", "verdict", "size", "peak memory", "parity", "result"):
        table.add_column(column, no_wrap=column != "result")
    for change in changes:
        verdict = change.latency.verdict if change.latency else change.presence
        style = "red" if change.regressions else ("green" if verdict == "improvement" else "")
        result = Text("ok")
        if change.regressions:
            result = Text("REGRESSION: " + "; ".join(change.regressions), style="bold red")
        table.add_row(
            change.label,
            _latency_text(change),
            Text(verdict, style=style),
            _delta(change.size),
            _delta(change.memory),
            change.parity,
            result,
        )
    console.print(table)


def comparison_markdown(changes: list[CaseChange]) -> str:
    regressions = [c for c in changes if c.regressions]
    lines = [
        "## ondevice-bench compare",
        "",
        f"**{len(regressions)} regression(s)** in {len(changes)} cases." if regressions else "No regression.",
        "",
        "| case | latency ratio [95% CI] | verdict | size | peak memory | parity | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in changes:
        verdict = c.latency.verdict if c.latency else c.presence
        result = "REGRESSION: " + "; ".join(c.regressions) if c.regressions else "ok"
        cells = [c.label, _latency_text(c), verdict, _delta(c.size), _delta(c.memory), c.parity, result]
        lines.append("| " + " | ".join(md_escape(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"
