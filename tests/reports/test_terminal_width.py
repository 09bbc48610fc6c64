"""`bench report` fits a 100-column terminal by default, and `--wide` shows every column."""

from __future__ import annotations

import pytest

from tests.conftest import bench
from tests.synthetic import CLASSIFIERS, GENAI

WIDE_ONLY = ("backend", "median ms [95% CI]", "p99 ms", "load ms cold/warm", "energy/inf", "CPU ms/tok", "ppl ratio")


@pytest.mark.parametrize("fixture", [CLASSIFIERS, GENAI], ids=["classifiers", "genai"])
def test_default_report_fits_100_columns_and_wide_shows_every_column(fixture) -> None:
    narrow = bench("report", str(fixture), env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "…" not in narrow.stdout  # no cell cut short, the generation table's included
    header = next(line for line in lines if line.split()[:1] == ["variant"])
    default = ("device", "status", "vs reference", "median ms", "peak mem", "size", "parity")
    assert all(name in header for name in default)
    assert "backend" not in header and "p99 ms" not in header
    assert any(line.startswith("  ship on cpu: ") for line in lines)
    assert any("Core ML variant" in line and "skipped" in line for line in lines)
    assert not any(line.split()[:1] == ["coreml-fp16"] for line in lines)  # no row for a skipped case

    wide = bench("report", "--wide", str(fixture), env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert wide.returncode == 0, wide.stderr
    headers = [line for line in wide.stdout.splitlines() if line.split()[:1] == ["variant"]]
    assert all(name in headers[0] for name in WIDE_ONLY[:5])
    assert "…" not in wide.stdout
    if fixture == GENAI:
        assert all(name in headers[1] for name in (*WIDE_ONLY[5:], "next-tok agree", "1st diverg. med/worst"))
