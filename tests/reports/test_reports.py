"""Reports over a real run: HTML in a real headless Chromium, Markdown, pytest-benchmark JSON, terminal."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.schema import load_results, write_results
from reports.frame import load_frame
from reports.html import render_html
from reports.markdown import render_markdown
from tests.conftest import bench

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = "<script>alert(1)</script>"
ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def run_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real smoke run with every report written by `bench run`."""
    root = tmp_path_factory.mktemp("report")
    paths = {"json": root / "r.json", "html": root / "r.html", "md": root / "r.md"}
    proc = bench(
        "run",
        "smoke",
        "-v",
        "torch-fp32",
        "-v",
        "onnx-fp32",
        "-v",
        "onnx-int8-static",
        "-v",
        "coreml-fp16",
        "--budget",
        "0.6",
        "--json",
        str(paths["json"]),
        "--html",
        str(paths["html"]),
        "--markdown",
        str(paths["md"]),
        cwd=root,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return paths


@pytest.fixture(scope="module")
def hostile_results(run_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real run with a model renamed to a script tag, and a reason carrying markup."""
    run = load_results(run_files["json"])
    for result in run.results:
        result.model = HOSTILE
        if result.reason:
            result.reason = f"{result.reason} <img src=x onerror=alert(2)> | *bold*"
    path = tmp_path_factory.mktemp("hostile") / "r.json"
    write_results(run, path)
    return path


def test_html_is_self_contained_and_small(run_files: dict[str, Path]) -> None:
    text = run_files["html"].read_text()
    assert "<script" not in text.lower()  # charts are inline SVG; nothing to execute or fetch
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert text.count("<svg") >= 3
    assert len(text.encode()) < 5_000_000
    for section in (
        "Which variant to ship",
        "Pareto front",
        "Latency distribution",
        "Latency vs accuracy",
        "Memory and energy",
        "Placement",
        "Parity details",
        "Environment",
    ):
        assert f">{section}<" in text


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_renders_in_headless_chromium(run_files: dict[str, Path], hostile_results: Path, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    hostile_html = tmp_path / "hostile.html"
    hostile_html.write_text(render_html([load_results(hostile_results)]))
    screenshot = Path(os.environ.get("BENCH_SCREENSHOT_DIR", tmp_path)) / "report.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        for path in (run_files["html"], hostile_html):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            console_errors, requests, dialogs = [], [], []
            page.on("console", lambda m, errors=console_errors: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e, errors=console_errors: errors.append(str(e)))
            page.on("request", lambda r, seen=requests: seen.append(r.url))
            page.on("dialog", lambda d, seen=dialogs: (seen.append(d.message), d.dismiss()))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            assert page.locator("div.chart svg").count() >= 3
            assert page.locator("div.chart svg path").count() > 10  # the charts drew shapes
            assert console_errors == []
            assert dialogs == []
            assert all(url.startswith("file://") for url in requests), requests
            if path == hostile_html:
                assert HOSTILE in page.inner_text("body")
            else:
                page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert screenshot.stat().st_size > 50_000


def test_hostile_strings_are_text_in_html_and_markdown(hostile_results: Path) -> None:
    run = load_results(hostile_results)
    html = render_html([run])
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    markdown = render_markdown([run])
    assert "<script>" not in markdown and "<img" not in markdown
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in markdown
    assert "\\| \\*bold\\*" in markdown  # a pipe in a reason cannot break the table


def test_markdown_summary(run_files: dict[str, Path]) -> None:
    text = run_files["md"].read_text()
    assert "**Which variant to ship**" in text and "digits\\_cnn on cpu:" in text
    rows = [line for line in text.splitlines() if line.startswith("| digits")]
    assert len(rows) == 3 and all(line.count(" | ") == 7 for line in rows)  # the skipped case is one line
    assert "- 1 Core ML variant skipped \\(coreml-fp16\\): Core ML runs only on macOS" in text
    assert any("onnx-int8-static" in row and "pass" in row for row in rows)


def test_pytest_benchmark_export_loads_in_its_own_compare(run_files: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "pb.json"
    proc = bench("report", str(run_files["json"]), "--pytest-benchmark", str(target))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(target.read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(data)
    names = {b["name"] for b in data["benchmarks"]}
    assert names == {"digits_cnn[torch-fp32-cpu]", "digits_cnn[onnx-fp32-cpu]", "digits_cnn[onnx-int8-static-cpu]"}
    run = load_results(run_files["json"])
    for bench_entry in data["benchmarks"]:
        result = next(r for r in run.results if f"[{r.variant}-{r.device}]" in bench_entry["name"])
        assert bench_entry["stats"]["rounds"] == result.latency_ms.n
        assert bench_entry["stats"]["min"] == pytest.approx(result.latency_ms.min / 1000)
    compare = subprocess.run(
        [str(Path(sys.executable).parent / "pytest-benchmark"), "compare", str(target)], capture_output=True, text=True
    )
    assert compare.returncode == 0, compare.stderr
    assert "digits_cnn[onnx-fp32-cpu]" in compare.stdout


def test_terminal_is_plain_and_aligned_without_a_tty(run_files: dict[str, Path]) -> None:
    proc = bench("report", str(run_files["json"]), env={"NO_COLOR": "1", "TERM": "dumb"})
    assert proc.returncode == 0
    assert not ANSI.search(proc.stdout)
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["variant"])
    columns = re.split(r"\s{2,}", header.strip())
    assert columns == ["variant", "device", "status", "vs reference", "median ms", "peak mem", "size", "parity"]
    rows = [line for line in lines if line.split()[:2] in (["torch-fp32", "cpu"], ["onnx-fp32", "cpu"])]
    assert len(rows) == 2
    starts = [header.index(name) for name in ("device", "status")]
    assert all(row[start - 1] == " " and row[start] != " " for row in rows for start in starts)  # aligned
    assert "  1 Core ML variant skipped (coreml-fp16): Core ML runs only on macOS" in lines
    assert any(line.startswith("  ship on cpu: ") for line in lines)


def test_frame_has_one_row_per_case(run_files: dict[str, Path]) -> None:
    df = load_frame([run_files["json"], run_files["json"]])
    assert len(df) == 8 and set(df["variant"]) == {"torch-fp32", "onnx-fp32", "onnx-int8-static", "coreml-fp16"}
    ok = df[df["status"] == "ok"]
    assert (ok["median_ms"] > 0).all() and (ok["ci95_lo_ms"] <= ok["median_ms"]).all()
    assert df.loc[df["variant"] == "coreml-fp16", "size_bytes"].iloc[0] > 0


def test_scatter_labels_never_collide_even_for_coinciding_points() -> None:
    """Six variants at two spots (equal latency and accuracy happen: fp32 on two runtimes): every label
    gets a box of its own."""
    from reports.charts import _pyplot, label_box, place_labels

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    points = [(1.0, 0.95)] * 4 + [(1.02, 0.951), (3.0, 0.5)]
    ax.scatter(*zip(*points, strict=True))
    labels = [f"variant-{i} (cpu)" for i in range(len(points))]
    texts = place_labels(ax, points, labels)
    renderer = fig.canvas.get_renderer()
    boxes = [label_box(t, renderer) for t in texts]
    assert [t.get_text() for t in texts] == labels
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)
