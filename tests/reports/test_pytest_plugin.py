from __future__ import annotations

from pathlib import Path

import pytest

from harness.results.schema import Environment, Result, RunRecord, write_results
from harness.results.stats import summarise
from profiles.schema import load_profile

pytest_plugins = ["pytester"]


def test_bench_results_fixture_asserts_on_cases(pytester: pytest.Pytester, tmp_path: Path) -> None:
    env = Environment("Linux", "x86_64", "cpu", 2, "3.11", {}, {})
    fp32 = Result("m", "onnx-fp32", "onnx", "cpu", "onnxruntime", "ok")
    fp32.latency_ms = summarise([[4.0, 4.1, 3.9]], 1)
    int8 = Result("m", "onnx-int8-static", "onnx", "cpu", "onnxruntime", "ok")
    int8.latency_ms = summarise([[2.0, 2.1, 1.9]], 1)
    path = tmp_path / "r.json"
    write_results(RunRecord("r1", "2026-11-22T00:00:00+00:00", env, load_profile("smoke"), [fp32, int8]), path)
    pytester.makepyfile(
        """
        import pytest

        def test_ratio(bench_results):
            assert bench_results.ratio("m", "onnx-int8-static", "onnx-fp32") == pytest.approx(0.5)

        def test_missing_case_names_what_exists(bench_results):
            with pytest.raises(LookupError, match="it has: m onnx-fp32 cpu, m onnx-int8-static cpu"):
                bench_results.case("m", "coreml-w8")
        """
    )
    pytester.runpytest("--bench-results", str(path)).assert_outcomes(passed=2)  # the plugin loads itself
    pytester.runpytest().assert_outcomes(skipped=2)
