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
    place_labels(ax, list(zip(xs, ys, strict=True)), [f"{r.variant} ({r.device})" for r, _ in points])
    return _svg(fig)


LABEL_OFFSETS = [(dx, dy) for radius in (6, 16, 28, 42, 58) for dx, dy in
                 ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.3), (0, -1.3), (1.3, 0), (-1.3, 0))]  # fmt: skip


def label_box(annotation: Any, renderer: Any) -> Any:
    """The box of an annotation's text alone (an annotation's own extent includes its leader line,
    which starts at the point and so overlaps every other label of that point)."""
    from matplotlib.text import Text

    return Text.get_window_extent(annotation, renderer)


def place_labels(ax: Any, points: list[tuple[float, float]], labels: list[str]) -> list[Any]:
    """Annotate each point with its label where the label's box overlaps no label placed before it:
    candidate offsets at growing distances in eight directions, a leader line once it moves away.
    Points that coincide (two variants with equal latency and accuracy) get labels apart."""
    figure = ax.figure
    renderer = figure.canvas.get_renderer()
    placed: list[Any] = []
    boxes: list[Any] = []
    for (x, y), label in zip(points, labels, strict=True):
        text = None
        for step, (dx, dy) in enumerate(LABEL_OFFSETS):
            radius = (6, 16, 28, 42, 58)[step // 8]
            offset = (dx * radius, dy * radius)
            if text is not None:
                text.remove()
            text = ax.annotate(
                label,
                (x, y),
                fontsize=8,
                xytext=offset,
                textcoords="offset points",
                ha="left" if dx >= 0 else "right",
                va="bottom" if dy >= 0 else "top",
                arrowprops={"arrowstyle": "-", "color": "0.5", "linewidth": 0.5} if radius > 6 else None,
            )
            box = label_box(text, renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(other) for other in boxes):
                break
        boxes.append(label_box(text, renderer))
        placed.append(text)
    return placed


def paired_ratios(model: str, results: list[Result]) -> str | None:
    """Each variant's paired ratio to the model's reference with its interval, on a log axis."""
    rows = [r for r in results if r.versus is not None and r.versus.ci95]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4))
    ratios = [r.versus.ratio for r in rows]  # type: ignore[union-attr]
    low = [r.versus.ratio - r.versus.ci95[0] for r in rows]  # type: ignore[union-attr]
    high = [r.versus.ci95[1] - r.versus.ratio for r in rows]  # type: ignore[union-attr]
    labels = [f"{r.variant} ({r.device}): {r.versus.verdict}" for r in rows]  # type: ignore[union-attr]
    ax.errorbar(ratios, range(len(rows)), xerr=[low, high], fmt="o", capsize=3)
    ax.axvline(1.0, color="0.4", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    against = sorted({r.versus.against for r in rows})  # type: ignore[union-attr]
    ax.set_xlabel(f"latency ratio to {', '.join(against)}, paired in one process (< 1: faster)")
    ax.set_title(f"{model}: paired latency ratios with 95% intervals")
    ax.grid(axis="x", alpha=0.3, which="both")
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
    for result, label in zip(rows, labels, strict=True):
        gen = result.generation or {}
        lengths = [int(n) for n in gen["ttft_ms"]]
        ttft_ax.plot(lengths, [gen["ttft_ms"][str(n)]["median"] for n in lengths], marker="o", label=label)
        contexts = sorted(int(c) for c in gen.get("decode_peak_rss_bytes_by_context", {}))
        peaks = [gen["decode_peak_rss_bytes_by_context"][str(c)] / 1e6 for c in contexts]
        memory_ax.plot(contexts, peaks, marker="o", label=label)
    ttft_ax.set_xscale("log")
    ttft_ax.set_yscale("log")
    ttft_ax.set_xlabel("prompt tokens")
    ttft_ax.set_ylabel("time to first token, ms (median)")
    ttft_ax.legend(fontsize="small")
    first = str(rows[0].generation["prompt_lengths"][0])  # type: ignore[index]
    sizes = [(r.artifact.size_bytes or 0) / 1e6 for r in rows]
    speeds = [r.generation["tokens_per_s"][first] or 0 for r in rows]  # type: ignore[index]
    speed_ax.scatter(sizes, speeds, s=60, alpha=0.6)
    place_labels(speed_ax, list(zip(sizes, speeds, strict=True)), labels)
    speed_ax.set_xlabel("artifact MB")
    speed_ax.set_ylabel(f"tokens/s decoding after a {first}-token prompt")
    memory_ax.set_xlabel("context tokens (prompt + generated)")
    memory_ax.set_ylabel("peak RSS while decoding, MB")
    for ax in (ttft_ax, speed_ax, memory_ax):
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"{model}: generation, greedy")
    fig.tight_layout()
    return _svg(fig)
