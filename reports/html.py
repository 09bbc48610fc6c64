"""A self-contained HTML report: inline styles, inline SVG charts, no script and no request to any host."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from jinja2 import Environment, select_autoescape

from harness.results.readings.decision import RULE, decide
from harness.results.readings.queries import ordered_results
from harness.results.schema import Result, RunRecord
from reports import charts
from reports.adapters import COLUMNS as ADAPTER_COLUMNS
from reports.adapters import AdapterRow, adapter_line, adapter_rows, set_lines
from reports.pareto import pareto_points
from reports.summary import shown, skipped_lines, versus_text
from reports.terminal import bytes_text, latency_text, ms_text, size_text

CLASSIFIER_METRICS = ("max_abs_err", "cosine", "snr_db", "top1_agreement", "task_accuracy", "accuracy_ratio")
DECODER_METRICS = ("next_token_agreement", "first_divergence_median", "first_divergence_worst", "perplexity_ratio")


def metric_keys(results: list[Result]) -> tuple[str, ...]:
    """The parity columns of a model's family: a decoder's token-level figures, else a classifier's."""
    decoder = any(r.parity and "next_token_agreement" in r.parity.metrics for r in results)
    return DECODER_METRICS if decoder else CLASSIFIER_METRICS


@dataclass
class _Formatter:
    """Number formatting for the template; every string it returns is escaped by the template."""

    run_of: dict  # id(result) -> the run it belongs to

    @staticmethod
    def ms(value: float | None) -> str:
        return ms_text(value)

    @staticmethod
    def bytes(value: int | None) -> str:
        return bytes_text(value)

    @staticmethod
    def latency(result: Result) -> str:
        return latency_text(result)

    def versus(self, result: Result) -> str:
        return versus_text(result, self.run_of[id(result)], named=True)[0]

    def verdict(self, result: Result) -> str:
        return versus_text(result, self.run_of[id(result)])[1]

    @staticmethod
    def size(result: Result, results: list[Result]) -> str:
        return size_text(result, results)

    @staticmethod
    def metric(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"


@dataclass
class _Adapters:
    """The runs' adapters table (`reports.adapters`) and its lines: per base and format, N adapters against
    N full models, and each adapter's task metric against its base's."""

    rows: list[AdapterRow]
    lines: list[str]


def _adapters(runs: list[RunRecord]) -> _Adapters | None:
    rows = [row for run in runs for row in adapter_rows(run)]
    lines = set_lines(rows) + [adapter_line(a) for run in runs for a in run.adapters or []]
    return _Adapters(rows, lines) if rows or lines else None


def render_html(runs: list[RunRecord]) -> str:
    environment = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = environment.from_string(resources.files("reports").joinpath("templates/report.html").read_text())
    by_model: dict[str, list[Result]] = {}
    run_of: dict = {}
    decisions = []
    for run in runs:
        for result in ordered_results(run):
            by_model.setdefault(result.model, []).append(result)
            run_of[id(result)] = run
        decisions += decide(run)
    charts_by_model = {
        model: {
            "headline": charts.headline(model, results, decisions),
            "latency": charts.latency_boxes(model, results),
            "paired": charts.paired_ratios(model, results),
            "pareto": charts.pareto(model, pareto_points(results)),
            "resources": charts.resources(model, results),
            "generation": charts.generation(model, results),
        }
        for model, results in by_model.items()
    }
    return template.render(
        runs=runs,
        by_model=list(by_model.items()),
        charts_by_model=charts_by_model,
        decisions=decisions,
        fronts={model: [p for p in pareto_points(results) if p.on_front] for model, results in by_model.items()},
        rule=RULE,
        fmt=_Formatter(run_of),
        metric_keys={model: metric_keys(results) for model, results in by_model.items()},
        shown={model: shown(results) for model, results in by_model.items()},
        skipped={model: skipped_lines(results) for model, results in by_model.items()},
        adapters=_adapters(runs),
        adapter_columns=ADAPTER_COLUMNS,
    )


def write_html(runs: list[RunRecord], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(runs), encoding="utf-8")
