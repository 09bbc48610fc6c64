"""A store writer for spawned test processes: imports only what opening a store needs, so it starts fast."""

from __future__ import annotations

from typing import Any

from harness.results.schema import Environment, Result, RunRecord
from harness.results.store import ResultsStore
from profiles.schema import load_profile


def open_and_write(url: str, run_id: str, ready: Any, go: Any) -> None:
    """Signal readiness, wait for the go, then open the store (migrating it if new) and write one run."""
    ready.release()
    go.wait(120)
    env = Environment("Linux 6", "x86_64", "cpu", 2, "3.11", {}, {"intra_op": 1}, "host-a")
    run = RunRecord(run_id, "2026-11-22T00:00:00+00:00", env, load_profile("smoke"))
    store = ResultsStore(url)
    store.add_run(run)
    store.add_result(run_id, Result("m", "onnx-fp32", "onnx", "cpu", "onnxruntime", "skipped", reason="test"))
