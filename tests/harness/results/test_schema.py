from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.results.schema import (
    SCHEMA_VERSION,
    AdapterRecord,
    AdapterTaskMetric,
    DiagnosisReport,
    Environment,
    GenerationSummary,
    GpuMemory,
    LatencyStats,
    PairedComparison,
    ParityResult,
    Result,
    RunRecord,
    ThermalState,
    load_results,
    to_json,
    write_results,
)
from harness.results.stats import summarise
from profiles.errors import ConfigError, SchemaError
from profiles.schema import Profile, ResolvedProfile, load_profile
from tests.conftest import CONTRACT_RESULT_KEYS
from tests.synthetic import FIXTURES


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


def test_a_results_file_from_before_the_typed_records_loads_into_them() -> None:
    """The committed classifiers and genai runs (written by b972745): the profile is the validated model,
    the nested records typed, and a generation summary that predates `kv_cache` reads it as None."""
    classifiers = load_results(FIXTURES / "classifiers-b972745.json")
    assert isinstance(classifiers.profile, ResolvedProfile) and isinstance(classifiers.profile.profile, Profile)
    assert classifiers.profile.profile.models == ["digits_cnn"]
    assert classifiers.profile.profile.parity.enforce is False
    measured = [r for r in classifiers.results if r.status == "ok"]
    assert measured and all(isinstance(s, ThermalState) for r in measured for s in r.thermal_states)
    genai = load_results(FIXTURES / "genai-b972745.json")
    summaries = [r.generation for r in genai.results if r.generation is not None]
    assert summaries and all(isinstance(g, GenerationSummary) for g in summaries)
    assert all(g.kv_cache is None and isinstance(g.ttft_ms["16"], LatencyStats) for g in summaries)


def test_the_profile_is_written_flat_and_read_back_as_the_model(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_results(record(), path)
    written = json.loads(path.read_text())["profile"]
    assert list(written)[:3] == ["name", "source", "description"] and written["name"] == "smoke"
    assert written["measure"] == load_profile("smoke").profile.measure.model_dump()
    assert load_results(path).profile == load_profile("smoke")


def test_a_recorded_profile_a_newer_or_older_bench_wrote_still_loads(tmp_path: Path) -> None:
    """The profile was valid for the bench that wrote it: a key, variant or gate family this bench does
    not know is not an error in a results file (it is in a profile the user gives)."""
    data = json.loads(to_json(record()))
    data["profile"]["variants"] = ["onnx-fp32", "onnx-fp99"]
    data["profile"]["measure"]["affinity"] = "big-cores"
    data["profile"]["parity"]["gates"]["int2"] = {"cosine_min": 0.9}
    data["profile"]["future_table"] = {"x": 1}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    profile = load_results(path).profile.profile
    assert profile.variants == ["onnx-fp32", "onnx-fp99"] and "int2" not in profile.parity.gates
    with pytest.raises(ConfigError, match="unknown variant 'onnx-fp99'"):
        load_profile("smoke", {"variants": ["onnx-fp99"]})


def test_a_record_s_keys_are_the_ones_measured(tmp_path: Path) -> None:
    """GPU memory and a diagnosis hold only the figures their source has: the typed records leave out
    what is None there, as the dicts they replace never had the key."""
    run = record()
    run.results[0].memory.gpu = GpuMemory("torch.cuda allocator", peak_allocated_bytes=5, peak_reserved_bytes=8)
    run.results[0].parity = ParityResult(False, diagnosis=DiagnosisReport(summary="not diagnosed"))
    data = json.loads(to_json(run))["results"][0]
    assert data["memory"]["gpu"] == {
        "source": "torch.cuda allocator",
        "peak_allocated_bytes": 5,
        "peak_reserved_bytes": 8,
    }
    assert data["parity"]["diagnosis"] == {"first_divergent_layer": None, "summary": "not diagnosed"}
    path = tmp_path / "r.json"
    write_results(run, path)
    assert load_results(path) == run


def test_adapter_records_are_additive_and_round_trip(tmp_path: Path) -> None:
    """A run without adapter models writes no adapter keys (the files before them are the files after);
    one with them keeps each adapter's record and each unfused variant's paired ratio to its fused one."""
    plain = json.loads(to_json(record()))
    assert "adapters" not in plain and "versus_fused" not in plain["results"][0]
    run = record()
    task = AdapterTaskMetric("perplexity", 3.5, 9.0, 64, "held-out rows")
    run.adapters = [AdapterRecord("m+a", "m", "a", [8], ["fc1"], 1024, 4096, task)]
    run.results[0].versus_fused = PairedComparison(
        "onnx-fp32", 1.08, [1.02, 1.15], "regression", 0.01, "", "log-ratio of the fastest third of each arm's blocks"
    )
    path = tmp_path / "r.json"
    write_results(run, path)
    loaded = load_results(path)
    assert loaded == run
    assert loaded.adapters is not None and loaded.adapters[0].task is not None and loaded.adapters[0].task.beats_base
