"""Charts as inline SVG drawn by matplotlib: no script, no request, text kept as (escaped) text."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from harness.results.readings.queries import measured
from harness.results.schema import Result

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


def _plain_log(axis: Any) -> None:
    """A log axis labelled in plain numbers (`0.2`, `5`, `1000`), never mathtext: with parse_math off
    matplotlib's log formatter prints its `$\\mathdefault{..}$` source. Ticks at 1-2-5 within a decade or
    two, at 1-3 up to four, at each decade beyond, so labels stay apart."""
    from matplotlib import ticker

    low, high = sorted(axis.axes.get_xlim() if axis.axis_name == "x" else axis.axes.get_ylim())
    decades = np.log10(high / low) if low > 0 else 5.0
    subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0, 3.0) if decades <= 4 else (1.0,)
    locator = ticker.LogLocator(base=10, subs=subs)
    if sum(low <= t <= high for t in locator.tick_values(low, high)) < 2:  # a narrow range: even steps
        locator = ticker.MaxNLocator(nbins=4)
    axis.set_major_locator(locator)
    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _legend_outside(ax: Any, **kwargs: Any) -> None:
    """The legend right of the axes, where it covers no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize="small", **kwargs)


def headline(model: str, results: list[Result], decisions: list[Any]) -> str | None:
    """The first screen's chart: per variant, how much faster (paired latency ratio) and how much
    smaller than the reference, with the task metric's cost in the label; the variant to ship marked."""
    from reports.pareto import pareto_points

    points = sorted(pareto_points(results), key=lambda p: p.ratio)
    if not points:
        return None
    reference = next((d.reference for d in decisions if d.model == model), None)
    chosen = {(d.device, d.variant) for d in decisions if d.model == model and d.chosen}
    ref_point = next((p for p in points if p.result.variant == reference), None)
    ref_size = ref_point.size if ref_point else max(p.size for p in points)
    ref_value = ref_point.value if ref_point else max(p.value for p in points)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(points) + 1.5))
    rows = np.arange(len(points))
    ax.barh(rows - 0.2, [p.ratio for p in points], height=0.38, label="latency (paired ratio)", color="tab:blue")
    ax.barh(rows + 0.2, [p.size / ref_size for p in points], height=0.38, label="artifact size", color="tab:gray")
    labels = []
    for p in points:
        ship = "  <- ship" if (p.result.device, p.result.variant) in chosen else ""
        cost = (p.value - ref_value) * 100
        labels.append(f"{p.result.variant} ({p.result.device}) {p.metric} {p.value:.3f} ({cost:+.1f} pt){ship}")
    ax.set_yticks(rows, labels, fontsize="small")
    ax.invert_yaxis()
    ax.axvline(1.0, color="0.3", linewidth=1)
    ax.set_xlabel(f"x of {reference or 'the fastest'} (1 = the reference; lower is faster / smaller)")
    ax.set_title(f"{model}: how much faster and smaller, at what {points[0].metric} cost")
    ax.grid(axis="x", alpha=0.3)
    _legend_outside(ax)
    return _svg(fig)


def pareto(model: str, points: list[Any]) -> str | None:
    """Latency ratio (log) against the task metric, marker area by size; the front drawn and its points
    solid, the dominated faded; every label clear of every other label and every point."""
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    sizes = np.array([p.size for p in points], dtype=float)
    marker = 30 + 220 * sizes / sizes.max()
    front = [p for p in points if p.on_front]
    for subset, alpha, label in (
        (front, 0.85, "on the Pareto front"),
        ([p for p in points if not p.on_front], 0.2, "dominated"),
    ):
        if subset:
            ax.scatter(
                [p.ratio for p in subset],
                [p.value for p in subset],
                s=[marker[points.index(p)] for p in subset],
                alpha=alpha,
                color="tab:blue",
                label=label,
            )
    ordered = sorted(front, key=lambda p: p.ratio)
    ax.plot([p.ratio for p in ordered], [p.value for p in ordered], linestyle="--", linewidth=1, color="tab:blue")
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.25)
    _plain_log(ax.xaxis)
    metric = points[0].metric
    ax.set_xlabel("latency ratio to the reference (lower is faster)")
    ax.set_ylabel(f"{metric} (higher is better)")
    ax.set_title(f"{model}: latency vs {metric}; marker area = artifact size")
    ax.grid(alpha=0.3)
    _legend_outside(ax, markerscale=0.5)
    place_labels(
        ax,
        [(p.ratio, p.value) for p in points],
        [f"{p.result.variant} ({p.result.device})" for p in points],
        [float(np.sqrt(m)) for m in marker],
    )
    return _svg(fig)


# Candidate label offsets in points, nearest first: eight directions at growing radii, then a column of
# rows above and below, for the crowd of variants at nearly equal figures.
LABEL_OFFSETS = sorted(
    {
        (dx * r, dy * r)
        for r in (6, 16, 28, 42, 58)
        for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.3), (0, -1.3), (1.3, 0), (-1.3, 0))
    }
    | {(dx, dy) for dx in (-90, -40, 20, 70) for dy in range(-200, 201, 11)},
    key=lambda o: (o[0] ** 2 + o[1] ** 2, o),
)


def label_box(annotation: Any, renderer: Any) -> Any:
    """The box of an annotation's text alone (an annotation's own extent includes its leader line,
    which starts at the point and so overlaps every other label of that point). The text's place is
    worked out from its point and offset first: matplotlib does so only when it draws."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def place_labels(
    ax: Any, points: list[tuple[float, float]], labels: list[str], diameters: list[float] | None = None
) -> list[Any]:
    """Annotate each point with its label at the nearest offset (`LABEL_OFFSETS`) where the label's box
    lies inside the axes (outside are the tick labels and the title) and overlaps no label placed before
    it and no point's marker (`diameters` in points, default 8); a grey leader line ties it to its point.
    Points that coincide (two variants with equal latency and accuracy) get labels apart. Where no
    offset is clear, the least crowded one is taken."""
    from matplotlib.transforms import Bbox

    figure = ax.figure
    renderer = figure.canvas.get_renderer()
    scale = figure.dpi / 72
    inside = ax.get_window_extent(renderer)
    obstacles = []
    for (x, y), diameter in zip(points, diameters or [8.0] * len(points), strict=True):
        cx, cy = ax.transData.transform((x, y))
        half = diameter * scale / 2 + 1
        obstacles.append(Bbox([[cx - half, cy - half], [cx + half, cy + half]]))
    placed: list[Any] = []
    for (x, y), label in zip(points, labels, strict=True):
        text = ax.annotate(
            label,
            (x, y),
            fontsize=8,
            xytext=(0, 0),
            textcoords="offset points",
            arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 2},
        )
        best, best_clash = LABEL_OFFSETS[0], None
        for dx, dy in LABEL_OFFSETS:
            text.xyann = (dx, dy)
            text.set_ha("left" if dx >= 0 else "right")
            text.set_va("bottom" if dy >= 0 else "top")
            box = label_box(text, renderer).padded(2)
            clash = sum(box.overlaps(other) for other in obstacles) + 10 * (not _within(box, inside))
            if best_clash is None or clash < best_clash:
                best, best_clash = (dx, dy), clash
            if clash == 0:
                break
        text.xyann = best
        text.set_ha("left" if best[0] >= 0 else "right")
        text.set_va("bottom" if best[1] >= 0 else "top")
        obstacles.append(label_box(text, renderer).padded(1))
        placed.append(text)
    return placed


def _within(box: Any, outer: Any) -> bool:
    return box.x0 >= outer.x0 and box.x1 <= outer.x1 and box.y0 >= outer.y0 and box.y1 <= outer.y1


def paired_ratios(model: str, results: list[Result]) -> str | None:
    """Each variant's paired ratio to the model's reference with its interval, on a log axis."""
    rows = [r for r in results if r.versus is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4))
    ratios = [r.versus.ratio for r in rows]  # type: ignore[union-attr]
    low = [r.versus.ratio - r.versus.ci95[0] if r.versus.ci95 else 0.0 for r in rows]  # type: ignore[union-attr]
    high = [r.versus.ci95[1] - r.versus.ratio if r.versus.ci95 else 0.0 for r in rows]  # type: ignore[union-attr]
    labels = [f"{r.variant} ({r.device}): {r.versus.verdict}" for r in rows]  # type: ignore[union-attr]
    ax.errorbar(ratios, range(len(rows)), xerr=[low, high], fmt="o", capsize=3)
    ax.axvline(1.0, color="0.4", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    against = sorted({r.versus.against for r in rows})  # type: ignore[union-attr]
    ax.set_xlabel(f"latency ratio to {', '.join(against)}, paired in one process (< 1: faster)")
    ax.set_title(f"{model}: paired latency ratios with 95% intervals (where measured)")
    ax.grid(axis="x", alpha=0.3, which="both")
    _plain_log(ax.xaxis)
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


def generation(model: str, results: list[Result]) -> str | None:
    """A decoder's three costs against what drives them: time to first token against the prompt's length,
    decode speed against the artifact's size, and peak memory while decoding against the context."""
    rows = [r for r in results if r.generation]
    if not rows:
        return None
    plt = _pyplot()
    fig, (ttft_ax, speed_ax, memory_ax) = plt.subplots(1, 3, figsize=(13, 4.2))
    labels = [f"{r.variant} ({r.device})" for r in rows]
    summaries = [r.generation for r in rows if r.generation is not None]
    for gen, label in zip(summaries, labels, strict=True):
        lengths = [int(n) for n in gen.ttft_ms]
        ttft_ax.plot(lengths, [gen.ttft_ms[str(n)].median for n in lengths], marker="o", label=label)
        contexts = sorted(int(c) for c in gen.decode_peak_rss_bytes_by_context)
        peaks = [gen.decode_peak_rss_bytes_by_context[str(c)] / 1e6 for c in contexts]
        memory_ax.plot(contexts, peaks, marker="o", label=label)
    ttft_ax.set_xscale("log")
    ttft_ax.set_yscale("log")
    _plain_log(ttft_ax.xaxis)
    _plain_log(ttft_ax.yaxis)
    ttft_ax.set_xlabel("prompt tokens")
    ttft_ax.set_ylabel("time to first token, ms (median)")
    first = str(summaries[0].prompt_lengths[0])
    sizes = [(r.artifact.size_bytes or 0) / 1e6 for r in rows]
    speeds = [gen.tokens_per_s[first] or 0 for gen in summaries]
    speed_ax.scatter(sizes, speeds, s=60, alpha=0.6)
    speed_ax.margins(x=0.35, y=0.3)
    speed_ax.set_xlabel("artifact MB")
    speed_ax.set_ylabel(f"tokens/s decoding after a {first}-token prompt")
    memory_ax.set_xlabel("context tokens (prompt + generated)")
    memory_ax.set_ylabel("peak RSS while decoding, MB")
    for ax in (ttft_ax, speed_ax, memory_ax):
        ax.grid(alpha=0.3, which="both")
    _legend_outside(memory_ax)
    fig.suptitle(f"{model}: generation, greedy")
    fig.tight_layout()
    place_labels(speed_ax, list(zip(sizes, speeds, strict=True)), labels, [float(np.sqrt(60))] * len(rows))
    return _svg(fig)
