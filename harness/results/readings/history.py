"""History: every run in the store as time series, and the change points found in them.

A series is one machine key x model x variant x device x figure; the figure is the paired ratio to the
model's reference (`ratio`: both arms measured in the same processes, so the most stable figure) or the
absolute median (`median_ms`: the only one that sees a change every variant shares, the reference's too).
Its points are the runs that measured the case, oldest first.

Change points are Apache Otava's (`otava.analysis.compute_change_points`, MongoDB's algorithm): E-Divisive
means over sliding windows of `window` runs proposes candidates, and a candidate is kept only while a
two-sided t-test between the runs either side gives p < `max_pvalue` and their means differ by more than
`min_change`. The defaults are what the synthetic acceptance test (tests/harness/results/test_history.py)
holds: 200 series of 60 runs with 3 % noise and no step, 200 with a +5 % step at run 40, the noise one
run's spread (a normal scatter of sd 1.53 %: 95 % of runs within +/- 3 %, the interval each run records).
With p < 1e-4 and a 2 % floor, 0 of the 200 steady series show a change point and 199 of the 200 stepped
ones show one, every change point within 3 runs of run 40 (seed 31). Otava's own default, p < 1e-3 with
no floor, raised 5 to 13 of 200 false alarms in three seeds. Read as sd 3 % instead, the noise defeats any
detector on the second half: 0 or 1 false alarms, but 170 to 175 of 200 within 3 runs, and the
least-squares split told that there is exactly one step lands within 3 runs in only 91 % of series.

Noise-aware: a run whose interval is wide for its series (its relative 95 % interval more than
`WIDE_FACTOR` times the series' median one, and wider than `WIDE_FLOOR`), or whose latency the harness
flagged with high variation (CV above `harness.results.stats.CV_WARN`), is left out of the figures Otava
reads. It stays in the series, drawn and listed with the reason, but it cannot make a change point on its
own: a change point lies at a quiet run, and the segments either side are quiet runs. Where more than half
of a series' runs carry the high-variation flag, the flag is that host's normal state and tells the runs
apart no better than chance, so only the interval test applies there. In the same test file a +30 % run
with a wide interval or the flag in a steady series makes no change point; the same run quiet makes one.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal, TypedDict

from harness.results.stats import CV_WARN
from profiles.errors import ConfigError

Figure = Literal["ratio", "median_ms"]
Direction = Literal["regression", "improvement"]
FIGURES: tuple[Figure, ...] = ("ratio", "median_ms")
FIGURE_TEXT = {"ratio": "paired ratio to the reference", "median_ms": "median ms"}
WIDE_FACTOR = 3.0
WIDE_FLOOR = 0.02
MIN_QUIET_RUNS = 4  # fewer quiet runs than this: no change point can be told from noise
MISSING_OTAVA = "bench history needs Apache Otava: pip install 'ondevice-bench[history]'"


@dataclass(frozen=True)
class DetectionOptions:
    """Otava's settings: the sliding window (runs), the t-test's significance and the smallest change."""

    window: int = 50
    max_pvalue: float = 1e-4
    min_change: float = 0.02


@dataclass(frozen=True)
class HistoryPoint:
    """One measured case of one run, as the store holds it (`ResultsStore.history`)."""

    run_id: str
    created_at: str
    revision: str | None
    revision_describe: str | None
    label: str | None
    machine_key: str | None
    hostname: str | None
    model: str
    variant: str
    device: str
    backend: str
    median_ms: float
    ci95_lo_ms: float | None
    ci95_hi_ms: float | None
    cv: float | None
    ratio: float | None
    ratio_lo: float | None
    ratio_hi: float | None


@dataclass(frozen=True)
class SeriesKey:
    machine_key: str
    model: str
    variant: str
    device: str
    figure: Figure

    def text(self) -> str:
        return f"{self.model} {self.variant} {self.device} {self.figure}"


@dataclass
class Point:
    """One run of a series: its figure with the interval, and why it is left out of detection, if it is."""

    run_id: str
    created_at: str
    revision: str | None
    revision_describe: str | None
    label: str | None
    hostname: str | None
    value: float
    low: float | None
    high: float | None
    high_variation: bool = False
    noisy: str | None = None

    @property
    def revision_text(self) -> str:
        """The revision as a reader knows it: `git describe`, else the revision given, else the run id."""
        if self.revision_describe:
            return self.revision_describe
        return self.revision[:12] if self.revision and len(self.revision) == 40 else self.revision or self.run_id


class ChangePointRow(TypedDict):
    """A row of the store's `change_points` table: the series' key, then the change."""

    machine_key: str
    model: str
    variant: str
    device: str
    figure: Figure
    run_id: str
    revision: str
    created_at: str
    before_value: float
    after_value: float
    ratio: float
    direction: Direction
    p_value: float
    found_at: str


class ChangePointJson(ChangePointRow):
    """A change point in `bench history --json`: its row, and the index of its run in the series' points."""

    index: int


class PointJson(TypedDict):
    run_id: str
    created_at: str
    revision: str | None
    revision_describe: str | None
    label: str | None
    hostname: str | None
    value: float
    low: float | None
    high: float | None
    high_variation: bool
    noisy: str | None


class SeriesJson(TypedDict):
    """A series in `bench history --json`: its key, its points and its change points."""

    machine_key: str
    model: str
    variant: str
    device: str
    figure: Figure
    points: list[PointJson]
    change_points: list[ChangePointJson]


@dataclass
class ChangePoint:
    """Where a series moved to a new level: the first run at it, the medians of the quiet runs before and
    after (up to the neighbouring change points), and Otava's p-value. Lower is better for both figures."""

    series: SeriesKey
    run_id: str
    revision: str
    created_at: str
    index: int  # of the run in its series' points
    before: float
    after: float
    p_value: float
    found_at: str

    @property
    def ratio(self) -> float:
        return self.after / self.before

    @property
    def direction(self) -> Direction:
        return "regression" if self.after > self.before else "improvement"

    def row(self) -> ChangePointRow:
        """The `change_points` row of the store."""
        key = self.series
        return {
            "machine_key": key.machine_key,
            "model": key.model,
            "variant": key.variant,
            "device": key.device,
            "figure": key.figure,
            "run_id": self.run_id,
            "revision": self.revision,
            "created_at": self.created_at,
            "before_value": self.before,
            "after_value": self.after,
            "ratio": self.ratio,
            "direction": self.direction,
            "p_value": self.p_value,
            "found_at": self.found_at,
        }


@dataclass
class HistorySeries:
    key: SeriesKey
    points: list[Point]
    change_points: list[ChangePoint] = field(default_factory=list)

    def as_json(self) -> SeriesJson:
        key = self.key
        return {
            "machine_key": key.machine_key,
            "model": key.model,
            "variant": key.variant,
            "device": key.device,
            "figure": key.figure,
            "points": [PointJson(**asdict(point)) for point in self.points],
            "change_points": [ChangePointJson(**change.row(), index=change.index) for change in self.change_points],
        }


def _created(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.astimezone()


def build_series(
    rows: Iterable[HistoryPoint], machine: str | None = None, since: datetime | None = None, last: int | None = None
) -> list[HistorySeries]:
    """The series of `rows` (oldest first), with each point's noise marked. `machine`: only machine keys or
    hostnames that contain it (any case); `since`: only runs created then or later; `last`: each series'
    last runs only."""
    grouped: dict[SeriesKey, dict[str, Point]] = {}
    for row in rows:
        key_text = row.machine_key or ""
        if machine and machine.lower() not in f"{key_text}\n{row.hostname or ''}".lower():
            continue
        if since is not None and _created(row.created_at) < since:
            continue
        for figure in FIGURES:
            value, low, high = (
                (row.ratio, row.ratio_lo, row.ratio_hi)
                if figure == "ratio"
                else (row.median_ms, row.ci95_lo_ms, row.ci95_hi_ms)
            )
            if value is None or not value > 0:
                continue
            key = SeriesKey(key_text, row.model, row.variant, row.device, figure)
            flagged = figure == "median_ms" and row.cv is not None and row.cv > CV_WARN
            point = Point(
                row.run_id, row.created_at, row.revision, row.revision_describe, row.label, row.hostname,
                value, low, high, flagged,
            )  # fmt: skip
            grouped.setdefault(key, {}).setdefault(row.run_id, point)  # a run's first such case
    series = []
    for key in sorted(grouped, key=lambda k: (k.machine_key, k.model, k.device, k.variant, k.figure)):
        points = sorted(grouped[key].values(), key=lambda p: (_created(p.created_at), p.run_id))
        points = points[-last:] if last else points
        mark_noise(points)
        series.append(HistorySeries(key, points))
    return series


def mark_noise(points: list[Point]) -> None:
    """Set `noisy` on the points detection leaves out (the module's docstring gives the rule and why)."""
    widths = {
        id(p): (p.high - p.low) / p.value for p in points if p.low is not None and p.high is not None and p.value > 0
    }
    typical = statistics.median(widths.values()) if widths else 0.0
    limit = max(WIDE_FLOOR, WIDE_FACTOR * typical)
    flag_counts = sum(p.high_variation for p in points) <= len(points) / 2
    for point in points:
        width = widths.get(id(point))
        if width is not None and width > limit:
            point.noisy = f"wide interval: {width:.1%} of the value, over {limit:.1%} for this series"
        elif point.high_variation and flag_counts:
            point.noisy = f"high variation: CV above {CV_WARN:.0%}"


def find_change_points(series: HistorySeries, options: DetectionOptions, found_at: str) -> list[ChangePoint]:
    """Otava's change points in the quiet runs of `series`, each placed at its first run on the new level."""
    try:
        from otava.analysis import compute_change_points
    except ImportError as exc:
        raise ConfigError(MISSING_OTAVA) from exc
    quiet = [index for index, point in enumerate(series.points) if point.noisy is None]
    if len(quiet) < MIN_QUIET_RUNS:
        return []
    values = [series.points[index].value for index in quiet]
    found, _weak = compute_change_points(
        values, window_len=options.window, max_pvalue=options.max_pvalue, min_magnitude=options.min_change
    )
    found = sorted(found, key=lambda c: c.index)
    bounds = [0, *(int(c.index) for c in found), len(values)]
    changes = []
    for number, candidate in enumerate(found):
        point = series.points[quiet[bounds[number + 1]]]
        changes.append(
            ChangePoint(
                series=series.key,
                run_id=point.run_id,
                revision=point.revision_text,
                created_at=point.created_at,
                index=quiet[bounds[number + 1]],
                before=statistics.median(values[bounds[number] : bounds[number + 1]]),
                after=statistics.median(values[bounds[number + 1] : bounds[number + 2]]),
                p_value=float(candidate.stats.pvalue),
                found_at=found_at,
            )
        )
    return changes


def analyse(series: list[HistorySeries], options: DetectionOptions, found_at: str) -> list[HistorySeries]:
    """`series` with their change points found."""
    for one in series:
        one.change_points = find_change_points(one, options, found_at)
    return series


def new_regressions(series: list[HistorySeries], last: int) -> list[ChangePoint]:
    """The regression change points at one of the last `last` runs of their series: what a nightly gate fails."""
    found = []
    for one in series:
        recent = {point.run_id for point in one.points[-last:]}
        found += [c for c in one.change_points if c.direction == "regression" and c.run_id in recent]
    return found
