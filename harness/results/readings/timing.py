"""Where a run's time went: the share of its wall time spent in timed sampling, what the worker processes
paid to start, and what the conversions cost. One line at the end of `bench run`, and the same from any
results file (`tools/time_breakdown.py`)."""

from __future__ import annotations

import statistics

from harness.results.schema import RunRecord, RunTiming


def measured_s(timing: RunTiming) -> float:
    return sum(p.sampling_s for p in timing.processes)


def startup_s(timing: RunTiming) -> list[float]:
    return [p.startup_s for p in timing.processes if p.startup_s is not None]


def breakdown_line(timing: RunTiming) -> str:
    """E.g. `measured 193 s of 1460 s (13%); start-up 540 s in 120 processes (median 4.1 s); conversions
    410 s`."""
    wall, sampled, startups = timing.wall_s, measured_s(timing), startup_s(timing)
    share = f" ({sampled / wall:.0%})" if wall > 0 else ""
    median = f" (median {statistics.median(startups):.2f} s)" if startups else ""
    return (
        f"measured {sampled:.0f} s of {wall:.0f} s{share}; start-up {sum(startups):.0f} s in "
        f"{len(timing.processes)} processes{median}; conversions {timing.conversions_s:.0f} s"
    )


def phase_lines(timing: RunTiming) -> list[str]:
    """The phases and, per kind of process, count, start-up and sampling: the detail behind the line."""
    lines = [
        f"wall {timing.wall_s:.1f} s: prepare and convert {timing.prepare_s:.1f} s, unpaired {timing.unpaired_s:.1f} s,"
        f" paired {timing.paired_s:.1f} s, reporting {timing.reporting_s:.1f} s"
    ]
    for kind in ("prepare", "unpaired", "paired"):
        group = [p for p in timing.processes if p.kind == kind]
        if not group:
            continue
        starts = [p.startup_s for p in group if p.startup_s is not None]
        median = f"{statistics.median(starts):.2f}" if starts else "-"
        lines.append(
            f"{kind}: {len(group)} processes, wall {sum(p.wall_s for p in group):.1f} s, start-up median {median} s,"
            f" sampling {sum(p.sampling_s for p in group):.1f} s"
        )
    return lines


def slowest_conversions(record: RunRecord, count: int = 3) -> list[str]:
    """The conversions of this run that took longest, each once (`resnet18 et-xnnpack-int8 120.4 s`):
    where a cold run's preparing goes."""
    built: dict[tuple[str, str], float] = {}
    for result in record.results:
        seconds = result.artifact.conversion_s
        if seconds and not result.artifact.cache_hit:
            built[(result.model, result.variant)] = seconds
    ranked = sorted(built.items(), key=lambda item: -item[1])[:count]
    return [f"{model} {variant} {seconds:.1f} s" for (model, variant), seconds in ranked]
