"""The terminal view: one table per model, colours that carry meaning, plain under NO_COLOR or a pipe."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.schema import Result, RunRecord
from reports.generation import generation_table
from reports.plain import printable
from reports.summary import ordered_results, size_vs_fp32, versus_text

if TYPE_CHECKING:
    from harness.convert import ConvertRow

STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow", "diagnosis": "red"}


def bytes_text(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


def ms_text(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def latency_text(result: Result) -> str:
    lat = result.latency_ms
    if lat is None:
        return "-"
    return f"{ms_text(lat.median)} [{ms_text(lat.ci95[0])}, {ms_text(lat.ci95[1])}]"


def _parity(result: Result, enforced: bool) -> Text:
    parity = result.parity
    if parity is None:
        return Text("-")
    if parity.passed:
        return Text("pass", style="green")
    label = "FAIL" if enforced else "fail (report only)"
    return Text(f"{label}: " + "; ".join(parity.failures), style="bold red" if enforced else "red")


def size_text(result: Result, results: list[Result]) -> str:
    """Artifact size, and its ratio to the fp32 artifact of the same format."""
    ratio = size_vs_fp32(result, results)
    size = bytes_text(result.artifact.size_bytes)
    return f"{size} ({ratio:.2f}x)" if ratio is not None else size


def energy_text(result: Result) -> str:
    """Measured energy where a source gave it, else the CPU-time proxy (the header names the sources)."""
    energy = result.energy
    if energy.mj_per_inference is not None:
        return f"{energy.mj_per_inference:.3g} mJ"
    if energy.cpu_ms_per_inference is not None:
        return f"{ms_text(energy.cpu_ms_per_inference)} CPU ms"
    return "-"


def _versus(result: Result, record: RunRecord) -> Text:
    text, verdict = versus_text(result, record)
    return Text(text, style={"regression": "red", "improvement": "green"}.get(verdict, ""))


IDENTIFYING = ("variant", "device", "backend", "status")


def _identifying_widths(results: list[Result]) -> dict[str, int]:
    """The width each identifying column needs in full: a narrow terminal shrinks the figures, never
    the names that say which row is which."""
    return {
        column: max([len(column)] + [len(printable(getattr(result, column))) for result in results])
        for column in IDENTIFYING
    }


def model_table(model: str, results: list[Result], record: RunRecord, enforced: bool = True) -> Table:
    title = Text(printable(model))
    table = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    min_widths = _identifying_widths(results)
    for column, justify in [
        ("variant", "left"),
        ("device", "left"),
        ("backend", "left"),
        ("status", "left"),
        ("median ms [95% CI]", "right"),
        ("vs reference", "left"),
        ("p99 ms", "right"),
        ("load ms cold/warm", "right"),
        ("peak mem", "right"),
        (f"energy/inf ({', '.join(sorted({r.energy.source for r in results if r.latency_ms}) or ['-'])})", "right"),
        ("size", "right"),
        ("parity", "left"),
    ]:
        table.add_column(
            column,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=column != "parity",
            min_width=min_widths.get(column),
        )
    for result in results:
        status = Text(result.status, style=STATUS_STYLE[result.status])
        load = result.load_ms
        table.add_row(
            Text(printable(result.variant)),
            Text(printable(result.device)),
            Text(printable(result.backend)),
            status,
            latency_text(result),
            _versus(result, record),
            ms_text(result.latency_ms.p99) if result.latency_ms else "-",
            f"{ms_text(load.cold)}/{ms_text(load.warm)}" if load.cold is not None else "-",
            bytes_text(result.memory.peak_rss_bytes),
            energy_text(result),
            size_text(result, results),
            _parity(result, enforced),
        )
    return table


def render(record: RunRecord, console: Console) -> None:
    by_model: dict[str, list[Result]] = {}
    for result in ordered_results(record):
        by_model.setdefault(result.model, []).append(result)
    enforced = bool(record.profile.get("parity", {}).get("enforce", True))
    for model, results in by_model.items():
        console.print(model_table(model, results, record, enforced))
        generation = generation_table(model, results, enforced)
        if generation is not None:
            console.print(generation)
        notes: dict[tuple[str, str], list[str]] = {}  # one line per reason, naming every case it applies to
        for result in results:
            where = f"{result.variant} {result.device}"
            if result.reason:
                notes.setdefault((result.status, result.reason), []).append(where)
            for warning in result.warnings:
                notes.setdefault(("warning", warning), []).append(where)
            if result.parity is not None and result.parity.diagnosis:
                notes.setdefault(("diagnosis", result.parity.diagnosis["summary"]), []).append(where)
        for (kind, text), cases in notes.items():
            style = STATUS_STYLE.get(kind, "yellow")
            line = f"  {kind} ({', '.join(cases)}): {printable(text)}"
            console.print(Text(line, style=style), soft_wrap=True)


def render_conversions(rows: list[ConvertRow], console: Console, explain: bool = False) -> None:
    """`bench convert`: per model, each variant's status, size, ratio to fp32 of its format, time, cache
    (and with `explain`, why the cache hit or missed)."""
    by_model: dict[str, list[ConvertRow]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    for model, model_rows in by_model.items():
        table = Table(title=Text(printable(model)), title_justify="left", header_style="bold")
        columns = ["variant", "status", "size", "vs fp32", "convert s", "cache", "path / target", "reason"]
        for column in columns + (["cache: why"] if explain else []):
            justify = "right" if column in ("size", "vs fp32", "convert s") else "left"
            table.add_column(column, justify=justify, no_wrap=column not in ("reason", "cache: why"))  # type: ignore[arg-type]
        fp32 = {r.format: r.artifact.size_bytes for r in model_rows if r.variant.endswith("fp32")}
        for row in model_rows:
            art = row.artifact
            base = fp32.get(row.format)
            table.add_row(
                Text(printable(row.variant)),
                Text(row.status, style=STATUS_STYLE[row.status]),
                bytes_text(art.size_bytes),
                f"{art.size_bytes / base:.3f}" if base and art.size_bytes else "-",
                f"{art.conversion_s:.1f}" if art.conversion_s is not None else "-",
                ("hit" if art.cache_hit else "built") if art.path else "-",
                Text(printable(" ".join(x for x in (art.converter_path, art.deployment_target) if x) or "-")),
                Text(printable(row.reason or "")),
                *([Text(printable(art.cache_explanation or ""))] if explain else []),
            )
        console.print(table)
