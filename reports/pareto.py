"""The Pareto front of a model's variants: latency ratio, size and task metric, the three axes a shipping
choice trades."""

from __future__ import annotations

from dataclasses import dataclass

from harness.results.readings.queries import accuracy_metric, measured
from harness.results.schema import Result


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
