from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.results.schema import (
    SCHEMA_VERSION,
    Environment,
    ParityResult,
    Result,
    RunRecord,
    load_results,
    to_json,
    write_results,
)
from harness.results.stats import summarise
from profiles.errors import SchemaError
from profiles.schema import load_profile
from tests.conftest import CONTRACT_RESULT_KEYS


def record() -> RunRecord:
    env = Environment("Linux", "x86_64", "cpu", 2, "3.11", {"torch": "2.13.0"}, {"intra_op": 1})
    result = Result("m", "onnx-fp32", "onnx", "cpu", "onnxruntime", "ok")
    result.latency_ms = summarise([[1.0, 1.1, 0.9, 1.0, 1.05]], 1)
    return RunRecord("abc", "2026-11-22T00:00:00+00:00", env, load_profile("smoke"), [result])


def test_round_trip_keeps_every_contract_key(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_results(record(), path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert {"run_id", "created_at", "environment", "profile", "results"} <= set(data)
    assert set(data["results"][0]) >= CONTRACT_RESULT_KEYS
    loaded = load_results(path)
    assert loaded == record()


def test_unknown_schema_version_is_refused_in_one_line(tmp_path: Path) -> None:
    data = json.loads(to_json(record()))
    data["schema_version"] = 99
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=r"schema_version 99 is not supported") as info:
        load_results(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("content", "expected"), [("{", "not valid JSON"), ("[]", "no schema_version")])
def test_garbage_is_refused(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(SchemaError, match=expected):
        load_results(path)


def test_missing_file() -> None:
    with pytest.raises(SchemaError, match="no such results file"):
        load_results(Path("/nonexistent/r.json"))


def test_non_finite_numbers_are_written_as_null(tmp_path: Path) -> None:
    run = record()
    run.results[0].parity = ParityResult(False, metrics={"max_rel_err": float("nan"), "snr_db": float("inf")})
    path = tmp_path / "r.json"
    write_results(run, path)
    assert load_results(path).results[0].parity.metrics == {"max_rel_err": None, "snr_db": None}


def test_results_files_get_the_users_umask_and_no_temp_file_survives(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_results(record(), tmp_path / "r.json")
    finally:
        os.umask(previous)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
    target = tmp_path / "a-directory"
    target.mkdir()
    (target / "keep").write_text("x")  # os.replace cannot put a file over a non-empty directory
    with pytest.raises(OSError):
        write_results(record(), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory", "r.json"]


def test_a_results_file_failing_mid_run_does_not_stop_the_store(tmp_path: Path) -> None:
    from harness.orchestrate.runner import Runner
    from harness.results.store import ResultsStore
    from profiles.schema import load_profile

    store = ResultsStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    json_path = tmp_path / "out" / "r.json"
    runner = Runner(load_profile("smoke"), json_path, store)
    first, second = record().results[0], Result("m2", "onnx-fp32", "onnx", "cpu", "onnxruntime", "skipped")
    runner._emit(first)
    assert json_path.exists()
    (tmp_path / "out").rename(tmp_path / "gone")
    (tmp_path / "out").write_text("a file where the results directory was")
    runner._emit(second)
    assert runner.json_error is not None and runner.json_cases == 1
    assert runner.store_error is None and runner.stored_cases == 2
    assert [r.model for r in store.load_run(runner.run_id).results] == ["m", "m2"]
