"""A pytest plugin so a team can assert on ondevice-bench results inside its own test suite.

    # conftest.py (or installed ondevice-bench: the plugin loads itself)
    def test_int8_is_fast_and_accurate(bench_results):
        case = bench_results.case("mypkg.models:build", "onnx-int8-static")
        assert case.status == "ok" and case.parity.passed
        assert case.latency_ms.ci95[1] < 5.0
        assert bench_results.ratio("mypkg.models:build", "onnx-int8-static", "onnx-fp32") < 0.8

Run with `pytest --bench-results bench-results/run-....json` (or `BENCH_RESULTS=...`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.results.schema import Result, RunRecord, load_results


@dataclass
class BenchResults:
    run: RunRecord

    def case(self, model: str, variant: str, device: str = "cpu") -> Result:
        for result in self.run.results:
            if (result.model, result.variant, result.device) == (model, variant, device):
                return result
        known = sorted({f"{r.model} {r.variant} {r.device}" for r in self.run.results})
        raise LookupError(f"no case {model} {variant} {device} in run {self.run.run_id}; it has: {', '.join(known)}")

    def ratio(self, model: str, variant: str, reference: str, device: str = "cpu") -> float:
        """Median latency of `variant` over that of `reference`, both measured in this run."""
        current, base = self.case(model, variant, device), self.case(model, reference, device)
        if current.latency_ms is None or base.latency_ms is None:
            raise LookupError(f"{model}: {variant} or {reference} on {device} has no latency (not measured)")
        return current.latency_ms.median / base.latency_ms.median


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-results", default=None, help="ondevice-bench results file for the bench_results fixture")


@pytest.fixture(scope="session")
def bench_results(request: pytest.FixtureRequest) -> BenchResults:
    path = request.config.getoption("--bench-results") or os.environ.get("BENCH_RESULTS")
    if not path:
        pytest.skip("no ondevice-bench results given (--bench-results PATH or BENCH_RESULTS)")
    return BenchResults(load_results(Path(path)))
