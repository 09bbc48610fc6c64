"""The terminal view: one table per model, colours that carry meaning, plain under NO_COLOR or a pipe."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.schema import Result, RunRecord

if TYPE_CHECKING:
    from harness.convert import ConvertRow

STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow"}


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _latency(result: Result) -> str:
    lat = result.latency_ms
    if lat is None:
        return "-"
    return f"{_ms(lat.median)} [{_ms(lat.ci95[0])}, {_ms(lat.ci95[1])}]"


def _parity(result: Result, enforced: bool) -> Text:
    parity = result.parity
    if parity is None:
        return Text("-")
    if parity.passed:
        return Text("pass", style="green")
    label = "FAIL" if enforced else "fail (report only)"
    return Text(f"{label}: " + "; ".join(parity.failures), style="bold red" if enforced else "red")


def _size(result: Result, fp32_sizes: dict[str, int]) -> str:
    """Artifact size, and its ratio to the fp32 artifact of the same format."""
    size = result.artifact.size_bytes
    if size is None:
        return "-"
    fp32 = fp32_sizes.get(result.format)
    if fp32 and not result.variant.endswith("fp32"):
        return f"{_bytes(size)} ({size / fp32:.2f}x)"
    return _bytes(size)


def model_table(model: str, results: list[Result], enforced: bool = True) -> Table:
    table = Table(title=f"{model}", title_justify="left", show_lines=False, header_style="bold")
    for column, justify in [
        ("variant", "left"),
        ("device", "left"),
        ("backend", "left"),
        ("status", "left"),
        ("median ms [95% CI]", "right"),
        ("p99 ms", "right"),
        ("load ms cold/warm", "right"),
        ("peak mem", "right"),
        ("cpu ms/inf", "right"),
        ("size", "right"),
        ("parity", "left"),
    ]:
        table.add_column(column, justify=justify, no_wrap=column != "parity")  # type: ignore[arg-type]
    fp32 = {r.format: r.artifact.size_bytes for r in results if r.variant.endswith("fp32") and r.artifact.size_bytes}
    for result in results:
        status = Text(result.status, style=STATUS_STYLE[result.status])
        load = result.load_ms
        table.add_row(
            result.variant,
            result.device,
            result.backend,
            status,
            _latency(result),
            _ms(result.latency_ms.p99) if result.latency_ms else "-",
            f"{_ms(load.cold)}/{_ms(load.warm)}" if load.cold is not None else "-",
            _bytes(result.memory.peak_rss_bytes),
            _ms(result.energy.cpu_ms_per_inference),
            _size(result, fp32),
            _parity(result, enforced),
        )
    return table


def _ordered(record: RunRecord) -> list[Result]:
    """Results in the profile's model and variant order, whatever order they finished in."""
    models = list(record.profile.get("models", []))
    variants = list(record.profile.get("variants", []))

    def rank(values: list[str], value: str) -> int:
        return values.index(value) if value in values else len(values)

    return sorted(record.results, key=lambda r: (rank(models, r.model), r.model, rank(variants, r.variant), r.device))


def render(record: RunRecord, console: Console) -> None:
    by_model: dict[str, list[Result]] = {}
    for result in _ordered(record):
        by_model.setdefault(result.model, []).append(result)
    enforced = bool(record.profile.get("parity", {}).get("enforce", True))
    for model, results in by_model.items():
        console.print(model_table(model, results, enforced))
        for result in results:
            where = f"{result.variant} {result.device}"
            if result.reason:
                style = STATUS_STYLE[result.status]
                console.print(Text(f"  {result.status} ({where}): {result.reason}", style=style), soft_wrap=True)
            for warning in result.warnings:
                console.print(Text(f"  warning ({where}): {warning}", style="yellow"), soft_wrap=True)


def render_conversions(rows: list[ConvertRow], console: Console) -> None:
    """`bench convert`: per model, each variant's status, size, ratio to fp32 of its format, time, cache."""
    by_model: dict[str, list[ConvertRow]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    for model, model_rows in by_model.items():
        table = Table(title=model, title_justify="left", header_style="bold")
        for column in ("variant", "status", "size", "vs fp32", "convert s", "cache", "path / target", "reason"):
            justify = "right" if column in ("size", "vs fp32", "convert s") else "left"
            table.add_column(column, justify=justify, no_wrap=column != "reason")  # type: ignore[arg-type]
        fp32 = {r.format: r.artifact.size_bytes for r in model_rows if r.variant.endswith("fp32")}
        for row in model_rows:
            art = row.artifact
            base = fp32.get(row.format)
            table.add_row(
                row.variant,
                Text(row.status, style=STATUS_STYLE[row.status]),
                _bytes(art.size_bytes),
                f"{art.size_bytes / base:.3f}" if base and art.size_bytes else "-",
                f"{art.conversion_s:.1f}" if art.conversion_s is not None else "-",
                ("hit" if art.cache_hit else "built") if art.path else "-",
                " ".join(x for x in (art.converter_path, art.deployment_target) if x) or "-",
                row.reason or "",
            )
        console.print(table)
