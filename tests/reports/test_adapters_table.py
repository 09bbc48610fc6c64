"""The adapters table: per adapter and format, size added, switch, unfused/fused paired and parity, within
100 columns; the set line (the base once and N branches against N full models) and the task line."""

from __future__ import annotations

import math
from io import StringIO

from rich.console import Console

from harness.results.schema import (
    FAST_THIRD_STATISTIC,
    AdapterRecord,
    AdapterTaskMetric,
    LoadTimes,
    PairedComparison,
    PairedProcess,
    RunRecord,
)
from reports.adapters import render_adapters
from reports.html import render_html
from reports.markdown import render_markdown
from tests.synthetic import case, record

BASE_BYTES = 1_000_000
BRANCH_BYTES = 50_000


def adapters_run() -> RunRecord:
    results = []
    adapters = []
    for name, ratio in (("tiny_decoder+python_source", 1.08), ("tiny_decoder+unicode_names", 1.11)):
        fused = case("onnx-fp32", 1.0, BASE_BYTES, model=name)
        unfused = case("onnx-lora-unfused", 1.1, BASE_BYTES + BRANCH_BYTES, model=name)
        unfused.load_ms = LoadTimes(cold=12.5, warm=3.25)
        process = PairedProcess([1.0, 1.0], [ratio, ratio], [100, 100], "a", math.log(ratio))
        interval = [ratio - 0.03, ratio + 0.04]
        unfused.versus_fused = PairedComparison(
            "onnx-fp32", ratio, interval, "regression", 0.01, "", FAST_THIRD_STATISTIC, [process]
        )
        results += [fused, unfused]
        if name.endswith("python_source"):  # the widest format's name too
            for variant in ("et-xnnpack-fp32", "et-lora-unfused"):
                program = case(variant, 1.0, BASE_BYTES, model=name)
                program.format = "executorch"
                results.append(program)
        task = AdapterTaskMetric("perplexity", 3.2, 9.6, 64, "64 held-out rows")
        adapters.append(AdapterRecord(name, "tiny_decoder", name.split("+")[1], [8], ["qkv"], 12_288, 49_152, task))
    run = record(results, "adapters")
    run.adapters = adapters
    return run


def test_the_adapters_table_fits_100_columns_and_says_what_each_adapter_costs() -> None:
    stream = StringIO()
    render_adapters(adapters_run(), Console(width=100, file=stream, color_system=None))
    text = stream.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100 and "…" not in text
    row = next(line for line in lines if line.split()[:2] == ["tiny_decoder+python_source", "onnx"])
    assert any(line.split()[:2] == ["tiny_decoder+python_source", "executorch"] for line in lines)
    assert row.split()[1:] == ["onnx", "+50.0", "kB", "12.50/3.25", "1.08x", "[1.05,", "1.12]", "pass/pass"]
    words = " ".join(text.split())  # the lines under the table wrap at the console's width
    assert "tiny_decoder on onnx: the base once and 2 adapters' branches 1.1 MB, against 2 full models 2.0 MB" in words
    assert "held-out perplexity 3.2 against the base's 9.6 (64 held-out rows): beats the base" in words


def test_a_run_without_adapters_prints_no_adapters_section() -> None:
    plain = record([case("onnx-fp32", 1.0, BASE_BYTES)])
    stream = StringIO()
    render_adapters(plain, Console(width=100, file=stream))
    assert stream.getvalue() == ""
    assert "Adapters" not in render_markdown([plain]) and 'id="adapters"' not in render_html([plain])


def test_markdown_and_html_carry_the_adapters_table() -> None:
    run = adapters_run()
    markdown = render_markdown([run])
    assert "**Adapters**" in markdown and r"1.08x \[1.05, 1.12\]" in markdown  # escaped
    page = render_html([run])
    assert 'id="adapters"' in page and "against 2 full models" in page


def test_a_comparison_without_a_paired_process_is_not_a_ratio() -> None:
    """A budget spent before the adapter's series ran leaves it no process: no ratio to print (1.00x would
    read as "no overhead")."""
    run = adapters_run()
    for result in run.results:
        if result.versus_fused is not None:
            result.versus_fused.processes = []
    stream = StringIO()
    render_adapters(run, Console(width=100, file=stream, color_system=None))
    assert "not paired" in stream.getvalue() and "1.08x" not in stream.getvalue()
