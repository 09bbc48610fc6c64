"""`bench history --html` as a reader's browser draws it (headless Chromium): every series a chart, each
change point marked and labelled, each run's marker a link to its row, no text over other text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from harness.results.schema import ROUNDS_STATISTIC, Environment, LatencyStats, PairedComparison, Result, RunRecord
from harness.results.store import ResultsStore
from profiles.schema import load_profile
from tests.conftest import bench
from tests.reports.test_charts import CHROMIUM, CHROMIUM_ARGS, TEXT_BOXES, _clash

NIGHTLY = load_profile("smoke").model_copy(update={"name": "nightly"})

pytest.importorskip("otava", reason="apache-otava is not installed (pip install 'ondevice-bench[history]')")

# Per series chart: its change-point lines (dashed, red or green), its links and their targets' presence.
CHART_FACTS = """() => [...document.querySelectorAll('div.chart.series svg')].map(svg => ({
  title: [...svg.querySelectorAll('text')].map(t => t.textContent).find(t => t.includes('(cpu): ')) || '',
  links: [...svg.querySelectorAll('a')].map(a => a.getAttribute('xlink:href') || a.getAttribute('href')),
  targets: [...svg.querySelectorAll('a')].every(a => {
    const id = (a.getAttribute('xlink:href') || a.getAttribute('href')).slice(1);
    return document.getElementById(id) !== null;
  }),
  dashed: [...svg.querySelectorAll('path')].filter(p => (p.getAttribute('style') || '').includes('stroke-dasharray')
    && /stroke: ?#(d62728|2ca02c)/.test(p.getAttribute('style') || '')).length,
}))"""


def case(model: str, variant: str, median: float, ratio: float | None, half_width: float = 0.03) -> Result:
    low, high = median * (1 - half_width), median * (1 + half_width)
    result = Result(model, variant, variant.split("-")[0], "cpu", "onnxruntime", "ok")
    result.latency_ms = LatencyStats(median, median, 0.0, low, high, high, high, [low, high], 60, 0.02, [median], 1)
    if ratio is not None:
        result.versus = PairedComparison(
            "torch-fp32",
            ratio,
            [ratio * (1 - half_width), ratio * (1 + half_width)],
            "improvement",
            0.01,
            "",
            ROUNDS_STATISTIC,
        )
    return result


def history_store(path: Path) -> str:
    """Thirty nightly runs of two models: resnet's int8 build 8 % slower from run 18, its fp32 reference
    steady, mobilenet 6 % faster from run 12 and one run with a wide interval."""
    rng = np.random.default_rng(4)
    url = f"sqlite:///{path}"
    store = ResultsStore(url)
    env = Environment("Linux 6", "x86_64", "Test CPU", 8, "3.11", {}, {"intra_op": 1}, "runner-1")
    for run in range(1, 31):
        created = (datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(days=run)).isoformat()
        record = RunRecord(f"run{run:02d}", created, env, NIGHTLY, revision=f"v1.{run}")
        store.add_run(record)
        noise = 1 + 0.01 * rng.standard_normal(4)
        int8 = 1.08 if run >= 18 else 1.0
        mobile = 0.94 if run >= 12 else 1.0
        results = [
            case("resnet18", "torch-fp32", 12.0 * noise[0], None),
            case("resnet18", "onnx-int8", 5.0 * int8 * noise[1], 0.42 * int8 * noise[2]),
            case("mobilenet_v3_small", "onnx-fp32", 2.0 * mobile * noise[3], None, 0.4 if run == 25 else 0.03),
        ]
        for result in results:
            store.add_result(record.run_id, result)
    return url


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_history_page_draws_every_series_with_its_change_points_and_no_text_overlaps(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    url = history_store(tmp_path / "history.sqlite")
    page_path = tmp_path / "history.html"
    proc = bench("history", "--db", url, "--html", str(page_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_path.as_uri())
        charts = page.evaluate(TEXT_BOXES)
        facts = page.evaluate(CHART_FACTS)
        rows = page.evaluate("() => document.querySelectorAll('tr[id^=run-]').length")
        browser.close()
    titles = sorted(f["title"] for f in facts)
    assert titles == [
        "mobilenet_v3_small onnx-fp32 (cpu): median ms",
        "resnet18 onnx-int8 (cpu): median ms",
        "resnet18 onnx-int8 (cpu): paired ratio to the reference",
        "resnet18 torch-fp32 (cpu): median ms",
    ]
    assert rows == 30
    by_title = {f["title"]: f for f in facts}
    assert by_title["resnet18 onnx-int8 (cpu): median ms"]["dashed"] >= 1
    assert by_title["resnet18 onnx-int8 (cpu): paired ratio to the reference"]["dashed"] >= 1
    assert by_title["mobilenet_v3_small onnx-fp32 (cpu): median ms"]["dashed"] >= 1
    assert by_title["resnet18 torch-fp32 (cpu): median ms"]["dashed"] == 0
    for fact in facts:
        assert len(fact["links"]) == 30 and fact["targets"], fact["title"]
    labels = [t["text"] for chart in charts for t in chart["texts"]]
    assert "v1.18: +8.0%" in " ".join(labels) or any(t.startswith("v1.18: +") for t in labels)
    assert any(t.startswith("v1.12: -") for t in labels)
    for chart in charts:
        texts = chart["texts"]
        clashes = [(a["text"], b["text"]) for i, a in enumerate(texts) for b in texts[i + 1 :] if _clash(a, b)]
        assert clashes == [], f"chart {chart['index']} ({chart['title']}): overlapping text {clashes}"
    assert "wide interval" in page_path.read_text()
