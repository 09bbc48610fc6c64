"""`bench history` in the terminal: per machine a table of series (latest value, a sparkline, the change
points), and the JSON of it all."""

from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.results.readings.history import ChangePoint, DetectionOptions, HistorySeries, Point
from harness.results.schema import json_safe
from reports.plain import printable
from reports.terminal import ms_text

SPARKS = "▁▂▃▄▅▆▇█"
LEFT_OUT = "·"  # a run detection left out (noisy)
DIRECTION_STYLE = {"regression": "bold red", "improvement": "bold green"}


def value_text(point: Point, figure: str) -> str:
    """A point's figure with its interval where it has one: `0.052 [0.050, 0.055]`, `0.36x [0.35, 0.37]`."""
    show = (lambda v: f"{v:.3f}") if figure == "ratio" else ms_text
    unit = "x" if figure == "ratio" else " ms"
    interval = f" [{show(point.low)}, {show(point.high)}]" if point.low is not None and point.high is not None else ""
    return f"{show(point.value)}{unit}{interval}"


def sparkline(series: HistorySeries) -> Text:
    """The quiet runs as bars scaled from the series' lowest to its highest; a noisy run as a dot; the first
    run of each change point in its direction's colour."""
    quiet = [p.value for p in series.points if p.noisy is None] or [p.value for p in series.points]
    low, high = min(quiet), max(quiet)
    starts = {change.index: change.direction for change in series.change_points}
    line = Text()
    for index, point in enumerate(series.points):
        if point.noisy is not None:
            line.append(LEFT_OUT, style="dim")
            continue
        level = 0 if high == low else round((min(max(point.value, low), high) - low) / (high - low) * (len(SPARKS) - 1))
        line.append(SPARKS[level], style=DIRECTION_STYLE.get(starts.get(index, ""), ""))
    return line


def change_text(change: ChangePoint) -> Text:
    figure = "x" if change.series.figure == "ratio" else " ms"
    show = (lambda v: f"{v:.3f}") if change.series.figure == "ratio" else ms_text
    return Text.assemble(
        (f"{change.direction} {change.ratio - 1:+.1%}", DIRECTION_STYLE[change.direction]),
        printable(f" at {change.revision} ({show(change.before)}{figure} -> {show(change.after)}{figure},"),
        f" p {change.p_value:.1g})",
    )


def render_history(series: list[HistorySeries], console: Console) -> None:
    """One table per machine key: each series with its runs, latest value, sparkline and change points."""
    machines: dict[str, list[HistorySeries]] = {}
    for one in series:
        machines.setdefault(one.key.machine_key, []).append(one)
    for machine, members in machines.items():
        hosts = sorted({p.hostname for one in members for p in one.points if p.hostname})
        title = Text(printable(f"{machine or 'unknown machine'} (hosts: {', '.join(hosts) or '-'})"), style="bold")
        table = Table(title=title, title_justify="left", header_style="bold")
        for column in ("model", "variant", "device", "figure", "runs", "latest", "history", "change points"):
            table.add_column(column, no_wrap=column in ("history", "latest"))
        for one in members:
            latest = one.points[-1]
            changes = Text("\n").join(change_text(c) for c in one.change_points) if one.change_points else Text("-")
            left_out = sum(p.noisy is not None for p in one.points)
            runs = f"{len(one.points)}" + (f" ({left_out} noisy)" if left_out else "")
            table.add_row(
                printable(one.key.model), printable(one.key.variant), one.key.device, one.key.figure, runs,
                value_text(latest, one.key.figure), sparkline(one), changes,
            )  # fmt: skip
        console.print(table)


def history_json(series: list[HistorySeries], options: DetectionOptions) -> str:
    return json.dumps(
        json_safe({"options": asdict(options), "series": [one.as_json() for one in series]}), indent=1, allow_nan=False
    )
