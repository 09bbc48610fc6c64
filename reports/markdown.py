"""A compact Markdown summary for a pull-request comment; every name and message is escaped."""

from __future__ import annotations

import html
import re
from pathlib import Path

from harness.results.readings.decision import RULE, decide
from harness.results.readings.queries import ordered_results
from harness.results.schema import Result, RunRecord
from reports.adapters import COLUMNS as ADAPTER_COLUMNS
from reports.adapters import adapter_line, adapter_rows, set_lines
from reports.summary import shown, skipped_lines, versus_text
from reports.terminal import latency_text, size_text

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_escape(text: object) -> str:
    """Inline HTML neutralised (GitHub renders it) and Markdown punctuation escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False)).replace("\n", " ")


def render_markdown(runs: list[RunRecord]) -> str:
    lines = ["## ondevice-bench", ""]
    for run in runs:
        results = ordered_results(run)
        lines += [f"Run `{run.run_id}` on {md_escape(run.environment.cpu)} ({md_escape(run.environment.os)}).", ""]
        decisions = decide(run)
        if decisions:
            lines += [f"**Which variant to ship** ({md_escape(RULE)}):", ""]
            for decision in decisions:
                where = f"{md_escape(decision.model)} on {md_escape(decision.device)}"
                lines.append(f"- {where}: **{md_escape(decision.sentence())}**")
            lines.append("")
        lines += [
            "| model | variant | device | status | median ms [95% CI] | vs reference | size | parity |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in shown(results):
            vs, _ = versus_text(r, run)
            status = r.status + (f": {r.reason}" if r.reason else "")
            parity = "-"
            if r.parity is not None:
                parity = "pass" if r.parity.passed else "FAIL: " + "; ".join(r.parity.failures)
            cells = [r.model, r.variant, r.device, status, latency_text(r), vs, size_text(r, results), parity]
            lines.append("| " + " | ".join(md_escape(c) for c in cells) + " |")
        lines.append("")
        lines += [f"- {md_escape(line)}" for line in skipped_lines(results)]
        lines += [""] if skipped_lines(results) else []
        lines += _baseline_section(results)
        lines += _adapters_section(run)
    return "\n".join(lines)


def _adapters_section(run: RunRecord) -> list[str]:
    """A run with adapter models: the adapters table (`reports.adapters`) and a line per adapter."""
    if not run.adapters:
        return []
    lines = ["**Adapters**:", "", "| " + " | ".join(ADAPTER_COLUMNS) + " |", "|---" * len(ADAPTER_COLUMNS) + "|"]
    rows = adapter_rows(run)
    lines += ["| " + " | ".join(md_escape(cell) for cell in row.cells) + " |" for row in rows]
    notes = [*set_lines(rows), *(adapter_line(adapter) for adapter in run.adapters)]
    return [*lines, "", *(f"- {md_escape(note)}" for note in notes), ""]


def _baseline_section(results: list[Result]) -> list[str]:
    """With `--baseline`: each case's paired ratio to the baseline's artifact and its verdict."""
    paired = [r for r in results if r.against_baseline is not None]
    if not paired:
        return []
    regressions = sum(r.against_baseline.verdict == "regression" for r in paired)  # type: ignore[union-attr]
    lines = [
        f"**Against the baseline, paired in one process**: {regressions} latency regression(s) in {len(paired)} cases.",
        "",
        "| model | variant | device | latency ratio [95% CI] | verdict | processes |",
        "|---|---|---|---|---|---|",
    ]
    for r in paired:
        c = r.against_baseline
        assert c is not None
        interval = f"{c.ratio:.3f}x [{c.ci95[0]:.3f}, {c.ci95[1]:.3f}]" if c.ci95 else f"{c.ratio:.3f}x"
        cells = [r.model, r.variant, r.device, interval, c.verdict, str(len(c.processes))]
        lines.append("| " + " | ".join(md_escape(cell) for cell in cells) + " |")
    return [*lines, ""]


def write_markdown(runs: list[RunRecord], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(runs), encoding="utf-8")
