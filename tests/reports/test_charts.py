"""Charts as a reader's browser draws them: every SVG text element of every chart, measured in headless
Chromium, is clear of every other and is plain text (no mathtext source), on the committed classifier
and decoder runs and on a synthetic model with twelve variants at nearly equal latency."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.results.schema import RunRecord, load_results
from reports.html import render_html
from tests.synthetic import CLASSIFIERS, GENAI, twelve_variants

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

# Per chart: each text element's label and box, in the page's pixels.
TEXT_BOXES = """() => [...document.querySelectorAll('div.chart svg')].map((svg, index) => ({
  index,
  title: (svg.querySelector('text') || {}).textContent || '',
  texts: [...svg.querySelectorAll('text')].map(t => {
    const b = t.getBoundingClientRect();
    return {text: t.textContent, x0: b.left, y0: b.top, x1: b.right, y1: b.bottom};
  }).filter(t => t.text.trim() && t.x1 > t.x0),
}))"""


def _clash(a: dict, b: dict) -> bool:
    """Whether two boxes overlap by more than a pixel's rounding."""
    return min(a["x1"], b["x1"]) - max(a["x0"], b["x0"]) > 1 and min(a["y1"], b["y1"]) - max(a["y0"], b["y0"]) > 1


def chart_texts(run: RunRecord, tmp_path: Path) -> list[dict]:
    playwright = pytest.importorskip("playwright.sync_api")
    page_path = tmp_path / "report.html"
    page_path.write_text(render_html([run]))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_path.as_uri())
        charts = page.evaluate(TEXT_BOXES)
        browser.close()
    return charts


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("source", ["classifiers", "genai", "twelve"])
def test_no_chart_text_overlaps_or_shows_mathtext(source: str, tmp_path: Path) -> None:
    run = {"classifiers": lambda: load_results(CLASSIFIERS), "genai": lambda: load_results(GENAI)}.get(
        source, twelve_variants
    )()
    charts = chart_texts(run, tmp_path)
    assert len(charts) >= 3
    for chart in charts:
        texts = chart["texts"]
        assert texts, chart["index"]
        raw = [t["text"] for t in texts if "$" in t["text"] or "mathdefault" in t["text"]]
        assert raw == [], f"chart {chart['index']} ({chart['title']}): mathtext {raw}"
        clashes = [(a["text"], b["text"]) for i, a in enumerate(texts) for b in texts[i + 1 :] if _clash(a, b)]
        assert clashes == [], f"chart {chart['index']} ({chart['title']}): overlapping text {clashes}"
