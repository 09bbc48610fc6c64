"""The adapters table: per `BASE+ADAPTER` model and format, what its LoRA adapter costs on the device.

- size added: the unfused artifact's bytes less the fused one's. The fused model has the base's shapes, so
  its artifact is the base's size; the difference is the low-rank branch as the format stores it.
- switch ms c/w (cold/warm): with one artifact per adapter and no base shared between them, activating adapter B
  after adapter A is loading B's artifact: its first load in a fresh process (cold), and its load again in
  the same process (warm). A Core ML multifunction package, whose functions share the base, measures its
  own switch (`harness.measure.switch`, macOS 15).
- unfused/fused: the unfused variant's latency over the fused one's, paired in one process (per call, per
  decode step for a decoder), with its 95% interval (`Result.versus_fused`), header `unfused/fused [CI]`.
- parity: each variant against the adapter's own torch reference (the fused eager model), fused/unfused.

Under the table, per base and format with two or more adapters, the base once with every adapter's branch
against one full model per adapter; then one line per adapter: its rank and size, and its task metric on
held-out rows of its domain against its base's on the same rows."""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.results.schema import AdapterRecord, Result, RunRecord
from profiles.catalog import VARIANTS
from reports.plain import printable
from reports.terminal import bytes_text, ms_text


@dataclass(frozen=True)
class AdapterRow:
    model: str
    base: str
    format: str
    full_bytes: int | None  # the fused artifact: the base's shapes, so the base's size
    added_bytes: int | None  # the unfused artifact's bytes less the fused one's
    switch_ms: str
    ratio: str
    parity: str

    @property
    def cells(self) -> tuple[str, ...]:
        added = "-" if self.added_bytes is None else "+" + bytes_text(self.added_bytes)
        return (self.model, self.format, added, self.switch_ms, self.ratio, self.parity)


def _parity(result: Result | None) -> str:
    if result is None or result.parity is None:
        return "-" if result is None or result.status == "ok" else result.status
    return "pass" if result.parity.passed else "fail"


def adapter_rows(record: RunRecord) -> list[AdapterRow]:
    """One row per adapter model and unfused-adapter variant of the run, its fused variant beside it; by
    adapter in the run's order, then by format."""
    rows = []
    bases = {adapter.model: adapter.base for adapter in record.adapters or []}
    by_case = {(r.model, r.variant, r.device): r for r in record.results}
    for result in record.results:
        variant = VARIANTS.get(result.variant)
        if result.model not in bases or variant is None or not variant.unfused_adapter:
            continue
        fused = by_case.get((result.model, str(variant.recipe.get("fused")), result.device))
        full = fused.artifact.size_bytes if fused is not None else None
        added = result.artifact.size_bytes - full if full and result.artifact.size_bytes else None
        load = result.load_ms
        switch = f"{ms_text(load.cold)}/{ms_text(load.warm)}" if load.cold is not None else "-"
        ratio = result.status if result.status != "ok" else "-"
        paired = result.versus_fused
        if paired is not None and (paired.failure is not None or not paired.processes):
            ratio = "pairing failed" if paired.failure else "not paired"  # the reason is the run's log
        elif paired is not None:
            interval = f" [{paired.ci95[0]:.2f}, {paired.ci95[1]:.2f}]" if paired.ci95 else " (no CI)"
            ratio = f"{paired.ratio:.2f}x{interval}"
        where = result.format if result.device == "cpu" else f"{result.format} {result.device}"
        parity = f"{_parity(fused)}/{_parity(result)}"
        rows.append(AdapterRow(result.model, bases[result.model], where, full, added, switch, ratio, parity))
    order = list(bases)
    return sorted(rows, key=lambda row: (order.index(row.model), row.format))


def set_lines(rows: list[AdapterRow]) -> list[str]:
    """Per base and format with two or more adapters: the base stored once with each adapter's branch
    (what a shared-base deployment stores: a Core ML multifunction package, ONNX Runtime adapter files)
    against one full model per adapter."""
    groups: dict[tuple[str, str], list[AdapterRow]] = {}
    for row in rows:
        if row.full_bytes is not None and row.added_bytes is not None:
            groups.setdefault((row.base, row.format), []).append(row)
    lines = []
    for (base, where), members in groups.items():
        if len(members) < 2:
            continue
        shared = max(m.full_bytes or 0 for m in members) + sum(m.added_bytes or 0 for m in members)
        full = sum(m.full_bytes or 0 for m in members)
        lines.append(
            f"{base} on {where}: the base once and {len(members)} adapters' branches {bytes_text(shared)}, "
            f"against {len(members)} full models {bytes_text(full)} ({shared / full:.2f}x)"
        )
    return lines


def adapter_line(adapter: AdapterRecord) -> str:
    """What the adapter is, and its task metric against its base's."""
    ranks = "/".join(str(rank) for rank in adapter.ranks)
    what = (
        f"{adapter.model}: LoRA r{ranks} on {len(adapter.targets)} modules, {adapter.parameters:,} parameters "
        f"({bytes_text(adapter.weight_bytes)} fp32)"
    )
    task = adapter.task
    if task is None:
        return f"{what}; no dataset to judge its task on"
    verdict = "beats the base" if task.beats_base else "does NOT beat the base"
    return (
        f"{what}; held-out {task.metric} {task.adapter:.4g} against the base's {task.base:.4g} ({task.data}): {verdict}"
    )


COLUMNS = ("adapter", "format", "size added", "switch ms c/w", "unfused/fused [CI]", "parity f/u")


def render_adapters(record: RunRecord, console: Console) -> None:
    """After the models' tables: the adapters table (within 100 columns) and a line per adapter; nothing
    for a run without an adapter model."""
    if not record.adapters:
        return
    rows = adapter_rows(record)
    if rows:
        table = Table(
            title=Text("adapters"),
            title_justify="left",
            header_style="bold",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for name in COLUMNS:
            table.add_column(name, justify="left" if name in ("adapter", "format", "parity f/u") else "right")
        for row in rows:
            table.add_row(*(Text(printable(cell)) for cell in row.cells))
        console.print(table)
    for line in [*set_lines(rows), *(adapter_line(adapter) for adapter in record.adapters)]:
        console.print(Text(f"  {printable(line)}"))
