"""The terminal view: one table per model, colours that carry meaning, plain under NO_COLOR or a pipe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from harness.results.readings.decision import decide
from harness.results.readings.queries import ordered_results
from harness.results.schema import Result, RunRecord
from reports.generation import fits, generation_table
from reports.plain import printable
from reports.summary import shown, size_vs_fp32, skipped_lines, versus_text

if TYPE_CHECKING:
    from harness.results.schema import ConvertRow

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
DEFAULT_COLUMNS = ("variant", "device", "status", "vs reference", "median ms", "peak mem", "size", "parity")
# Dropped first, when the terminal is too narrow for every column: the figures a glance needs least.
DROP_ORDER = (
    "energy",
    "load ms cold/warm",
    "p99 ms",
    "median ms [95% CI]",
    "peak mem",
    "size",
    "median ms",
    "vs reference",
)


def model_table(
    model: str,
    results: list[Result],
    record: RunRecord,
    enforced: bool = True,
    width: int | None = None,
    wide: bool = False,
) -> Table:
    """One row per case that was not skipped. By default the columns that answer "which one, how fast
    against the reference, how big, does it agree" (`DEFAULT_COLUMNS`, within 100 columns); `wide`:
    every column. Within `width` (a narrow terminal) the table drops figure columns, in `DROP_ORDER`,
    rather than squeeze every column: squeezed, the columns that say which row is which shrink to
    nothing first."""
    sources = ", ".join(sorted({r.energy.source for r in results if r.latency_ms}) or ["-"])
    columns: list[tuple[str, str]] = [
        ("variant", "left"),
        ("device", "left"),
        ("backend", "left"),
        ("status", "left"),
        ("vs reference", "left"),
        ("median ms", "right"),
        ("median ms [95% CI]", "right"),
        ("p99 ms", "right"),
        ("load ms cold/warm", "right"),
        ("peak mem", "right"),
        (f"energy/inf ({sources})", "right"),
        ("size", "right"),
        ("parity", "left"),
    ]
    rows = []
    for result in shown(results):
        load = result.load_ms
        rows.append(
            [
                Text(printable(result.variant)),
                Text(printable(result.device)),
                Text(printable(result.backend)),
                Text(result.status, style=STATUS_STYLE[result.status]),
                _versus(result, record),
                ms_text(result.latency_ms.median) if result.latency_ms else "-",
                latency_text(result),
                ms_text(result.latency_ms.p99) if result.latency_ms else "-",
                f"{ms_text(load.cold)}/{ms_text(load.warm)}" if load.cold is not None else "-",
                bytes_text(result.memory.peak_rss_bytes),
                energy_text(result),
                size_text(result, results),
                _parity(result, enforced),
            ]
        )
    if wide:
        return _table(model, columns, rows, [i for i, c in enumerate(columns) if c[0] != "median ms"])
    kept = [i for i, c in enumerate(columns) if c[0] in DEFAULT_COLUMNS]
    identifying = [i for i in kept if columns[i][0] in IDENTIFYING]
    table = _table(model, columns, rows, kept)
    if width is None:
        return table
    for dropped in DROP_ORDER:
        if fits(table, width):
            return table
        edgeless = _table(model, columns, rows, kept, edge=False)  # the outer margins go before a column does
        if fits(edgeless, width):
            return edgeless
        kept = [i for i in kept if columns[i][0] != dropped]
        table = _table(model, columns, rows, kept)
    if not fits(table, width):
        table = _table(model, columns, rows, identifying, compact=True)
    return table


def _table(
    model: str,
    columns: list[tuple[str, str]],
    rows: list[list[Any]],
    kept: list[int],
    compact: bool = False,
    edge: bool = True,
) -> Table:
    """The table of the `kept` columns, ruled under the header only and one space between columns (a
    column's borders and padding would cost characters each); `compact`: no rule, headers no wider
    than their cells; `edge=False`: no margin column left and right of the table."""
    table = Table(
        show_edge=edge,
        title=Text(printable(model)),
        title_justify="left",
        show_lines=False,
        header_style="bold",
        box=None if compact else box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    for index in kept:
        name, justify = columns[index]
        longest = max(len(str(row[index])) for row in rows) if rows else len(name)
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=name != "parity",
            max_width=longest if compact else None,  # compact: a header may shorten, a name may not
        )
    for row in rows:
        table.add_row(*[row[index] for index in kept])
    return table


def render(record: RunRecord, console: Console, wide: bool = False) -> None:
    """Per model: its table, its generation table (decoders), one line per skip reason and per note,
    and the decision for each device. `wide`: every column, drawn as wide as it needs."""
    by_model: dict[str, list[Result]] = {}
    for result in ordered_results(record):
        by_model.setdefault(result.model, []).append(result)
    enforced = record.profile.profile.parity.enforce
    decisions = decide(record)
    for model, results in by_model.items():
        table = model_table(model, results, record, enforced, console.width, wide)
        _print_table(console, table, wide)
        generation = generation_table(model, results, enforced, wide, console.width)
        if generation is not None:
            _print_table(console, generation, wide)
        for line in skipped_lines(results):
            console.print(Text(f"  {printable(line)}", style=STATUS_STYLE["skipped"]))
        notes: dict[tuple[str, str], list[str]] = {}  # one line per reason, naming every case it applies to
        for result in shown(results):
            where = f"{result.variant} {result.device}"
            if result.reason:
                notes.setdefault((result.status, result.reason), []).append(where)
            for warning in result.warnings:
                notes.setdefault(("warning", warning), []).append(where)
            if result.parity is not None and result.parity.diagnosis:
                notes.setdefault(("diagnosis", result.parity.diagnosis.summary), []).append(where)
        for (kind, text), cases in notes.items():
            style = STATUS_STYLE.get(kind, "yellow")
            console.print(Text(f"  {kind} ({', '.join(cases)}): {printable(text)}", style=style))
        for decision in decisions:
            if decision.model == model:
                line = Text.assemble(("  ship", "bold"), f" on {printable(decision.device)}: ")
                line.append(printable(decision.sentence()), style="bold" if decision.chosen else "red")
                console.print(line)


def _print_table(console: Console, table: Table, wide: bool) -> None:
    """`wide`: the table at the width its cells need, not squeezed into the console's."""
    if not wide:
        console.print(table)
        return
    needed = Measurement.get(console, console.options.update_width(100_000), table).maximum
    width = console.width
    console.width = max(width, needed)  # print's own `width` is capped at the console's
    try:
        console.print(table)
    finally:
        console.width = width


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
