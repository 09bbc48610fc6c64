"""`bench history --html`: a self-contained page (no script, no request) with every series drawn, its change
points marked and each run's marker linked to the run's row."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from harness.results.readings.history import FIGURE_TEXT, DetectionOptions, HistorySeries
from reports.history.chart import series_chart
from reports.terminal import ms_text


def render_history_html(series: list[HistorySeries], options: DetectionOptions, source: str) -> str:
    environment = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = environment.from_string(resources.files("reports").joinpath("templates/history.html").read_text())
    machines: dict[str, list[tuple[HistorySeries, str]]] = {}
    runs: dict[str, dict[str, Any]] = {}
    for one in series:
        machines.setdefault(one.key.machine_key, []).append((one, series_chart(one)))
        for point in one.points:
            runs.setdefault(point.run_id, {"point": point, "machine": one.key.machine_key})
    ordered_runs = sorted(runs.values(), key=lambda r: (r["point"].created_at, r["point"].run_id))
    return template.render(
        source=source,
        options=options,
        machines=list(machines.items()),
        changes=[c for one in series for c in one.change_points],
        noisy=[(one, p) for one in series for p in one.points if p.noisy is not None],
        runs=ordered_runs,
        series_count=len(series),
        figure_text=FIGURE_TEXT,
        ms=ms_text,
    )


def write_history_html(series: list[HistorySeries], options: DetectionOptions, source: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_history_html(series, options, source), encoding="utf-8")
