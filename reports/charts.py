"""Charts as inline SVG drawn by matplotlib: no script, no request, text kept as (escaped) text."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from harness.schema import Result
from reports.summary import accuracy_metric, measured

MAX_BOX_POINTS = 4000


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "none", "text.parse_math": False, "svg.hashsalt": "ondevice-bench"})
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    _pyplot().close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _thin(samples: list[list[float]]) -> np.ndarray:
    """All samples, or evenly spaced quantiles of them where there are many (the box is unchanged)."""
    values = np.sort(np.concatenate([np.asarray(s, dtype=float) for s in samples]))
    if len(values) <= MAX_BOX_POINTS:
        return values
    return np.quantile(values, np.linspace(0, 1, MAX_BOX_POINTS))


def latency_boxes(model: str, results: list[Result]) -> str | None:
    rows = [r for r in results if measured(r) and r.samples_ms]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    ax.boxplot(
        [_thin(r.samples_ms) for r in rows],
        orientation="horizontal",
        whis=(1, 99),
        showfliers=False,
        tick_labels=[f"{r.variant} ({r.device})" for r in rows],
    )
    ax.set_xlabel("ms per inference (box: quartiles; whiskers: p1 to p99)")
    ax.set_title(f"{model}: latency distribution over all samples")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def pareto(model: str, results: list[Result]) -> str | None:
    points = [(r, accuracy_metric(r)) for r in results if measured(r)]
    points = [(r, m) for r, m in points if m is not None]
    if not points:
        return None
    metric = points[0][1][0]
    points = [(r, m) for r, m in points if m[0] == metric]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sizes = np.array([r.artifact.size_bytes or 0 for r, _ in points], dtype=float)
    marker = 40 + 600 * sizes / sizes.max() if sizes.max() > 0 else np.full(len(points), 80.0)
    xs = [r.latency_ms.median for r, _ in points]  # type: ignore[union-attr]
    ys = [m[1] for _, m in points]
    ax.scatter(xs, ys, s=marker, alpha=0.5)
    for (r, _), x, y in zip(points, xs, ys, strict=True):
        ax.annotate(f"{r.variant} ({r.device})", (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    frontier, best = [], -np.inf
    for x, y in sorted(zip(xs, ys, strict=True)):
        if y > best:
            frontier.append((x, y))
            best = y
    ax.plot(*zip(*frontier, strict=True), linestyle="--", linewidth=1, label="Pareto front")
    ax.set_xlabel("median ms per inference (lower is better)")
    ax.set_ylabel(f"{metric} (higher is better)")
    ax.set_title(f"{model}: latency vs {metric}; marker area = artifact size")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _svg(fig)


def resources(model: str, results: list[Result]) -> str | None:
    rows = [r for r in results if measured(r)]
    if not rows:
        return None
    plt = _pyplot()
    fig, (mem_ax, cpu_ax) = plt.subplots(1, 2, figsize=(10, 0.4 * len(rows) + 1.4), sharey=True)
    labels = [f"{r.variant} ({r.device})" for r in rows]
    mem_ax.barh(labels, [(r.memory.peak_rss_bytes or 0) / 1e6 for r in rows])
    mem_ax.set_xlabel(f"peak RSS in inference, MB ({rows[0].memory.source})")
    cpu_ax.barh(labels, [r.energy.cpu_ms_per_inference or 0 for r in rows], color="tab:orange")
    sources = sorted({r.energy.source for r in rows})
    cpu_ax.set_xlabel(f"CPU ms per inference (energy source: {', '.join(sources)})")
    mem_ax.invert_yaxis()
    fig.suptitle(f"{model}: memory and energy proxy")
    return _svg(fig)
