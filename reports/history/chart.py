"""A history series as an inline SVG chart, drawn with the report charts' machinery (reports.charts)."""

from __future__ import annotations

import numpy as np

from harness.results.readings.history import FIGURE_TEXT, HistorySeries
from reports.charts import _legend_outside, _pyplot, _svg, place_labels


def series_chart(series: HistorySeries) -> str:
    """One history series over its runs (1 = the oldest shown): each run's figure with its interval, the
    runs detection left out hollow, each marker a link to its run's row below the charts (`#run-ID`), and
    each change point a dashed line before its first run, labelled with the revision and the change."""
    from matplotlib import ticker

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    runs = np.arange(1, len(series.points) + 1)
    values = [p.value for p in series.points]
    low = [p.value - p.low if p.low is not None else 0.0 for p in series.points]
    high = [p.high - p.value if p.high is not None else 0.0 for p in series.points]
    ax.errorbar(runs, values, yerr=[low, high], fmt="none", ecolor="0.7", elinewidth=1, zorder=1)
    ax.plot(runs, values, color="tab:blue", linewidth=0.8, alpha=0.6, zorder=2)
    for noisy, style in ((False, {"color": "tab:blue"}), (True, {"facecolors": "white", "edgecolors": "tab:blue"})):
        picked = [i for i, p in enumerate(series.points) if (p.noisy is not None) == noisy]
        if picked:
            markers = ax.scatter(
                runs[picked], [values[i] for i in picked], s=22, zorder=3,
                label="run left out of detection (noisy)" if noisy else "run", **style,
            )  # fmt: skip
            markers.set_urls([f"#run-{series.points[i].run_id}" for i in picked])
    for change in series.change_points:
        colour = "tab:red" if change.direction == "regression" else "tab:green"
        ax.axvline(change.index + 0.5, color=colour, linestyle="--", linewidth=1.2, zorder=0)
    ax.margins(x=0.03, y=0.35)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, nbins=10))
    ax.set_xlabel("run, oldest to newest (each point links to its run in the table below)")
    ax.set_ylabel("x of the reference" if series.key.figure == "ratio" else "ms per inference")
    ax.set_title(f"{series.key.model} {series.key.variant} ({series.key.device}): {FIGURE_TEXT[series.key.figure]}")
    ax.grid(alpha=0.3)
    if series.change_points:
        for direction, colour in (("regression", "tab:red"), ("improvement", "tab:green")):
            if any(c.direction == direction for c in series.change_points):
                ax.plot([], [], color=colour, linestyle="--", label=f"change point: {direction}")
    _legend_outside(ax)
    top = max(p.high if p.high is not None else p.value for p in series.points)  # labels go above the data
    place_labels(
        ax,
        [(change.index + 0.5, top) for change in series.change_points],
        [f"{change.revision}: {change.ratio - 1:+.1%}" for change in series.change_points],
    )
    return _svg(fig)
