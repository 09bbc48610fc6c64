"""History series and their change points: synthetic histories written through the real store (the false
alarm and detection figures harness.results.readings.history's docstring gives), the noise rule, and the
migration of a store written before history."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from harness.results.readings.history import (
    DetectionOptions,
    HistoryPoint,
    analyse,
    build_series,
    new_regressions,
)
from harness.results.schema import (
    ROUNDS_STATISTIC,
    Environment,
    LatencyStats,
    PairedComparison,
    Result,
    RunRecord,
    json_safe,
    machine_key,
)
from harness.results.store import MIGRATIONS, ResultsStore
from profiles.schema import load_profile

NIGHTLY = load_profile("smoke").model_copy(update={"name": "nightly"})

pytest.importorskip("otava", reason="apache-otava is not installed (pip install 'ondevice-bench[history]')")

ENV = Environment("Linux 6", "x86_64", "Test CPU", 2, "3.11", {}, {"intra_op": 1}, "runner-1")
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
RUNS, SERIES, STEP_RUN = 60, 200, 40  # STEP_RUN: the first run (1-based) at the new level
SPREAD = 0.03 / 1.96  # "3 % noise": 95 % of runs within +/- 3 % of the level, the interval each run records


def latency(median: float, half_width: float, cv: float = 0.02) -> LatencyStats:
    low, high = median * (1 - half_width), median * (1 + half_width)
    return LatencyStats(median, median, median * cv, low, high, high, high, [low, high], 60, cv, [median], 1)


def measured(
    model: str, median: float, half_width: float = 0.03, cv: float = 0.02, ratio: float | None = None
) -> Result:
    """A measured case; with `ratio`, paired with its reference (interval +/- `half_width` too)."""
    result = Result(model, "onnx-fp32", "onnx", "cpu", "onnxruntime", "ok", latency_ms=latency(median, half_width, cv))
    if ratio is not None:
        interval = [ratio * (1 - half_width), ratio * (1 + half_width)]
        result.versus = PairedComparison("torch-fp32", ratio, interval, "improvement", 0.01, "", ROUNDS_STATISTIC)
    return result


def synthetic_store(url: str, seed: int = 31) -> ResultsStore:
    """SERIES steady series and SERIES with a +5 % step at STEP_RUN, RUNS runs each, written as `bench run`
    writes them: one run record per run, one result per case. Each case makes two series, its median and its
    paired ratio to the reference, with noise of their own: a build 5 % slower moves both."""
    rng = np.random.default_rng(seed)
    store = ResultsStore(url)
    cases = SERIES // 2
    medians = 1.0 + rng.random(2 * cases)  # each case its own level: 1 to 2 ms, a ratio of 0.25 to 0.5
    for run in range(1, RUNS + 1):
        record = RunRecord(f"run{run:03d}", (START + timedelta(hours=run)).isoformat(), ENV, NIGHTLY)
        record.revision, record.label = f"rev{run:03d}", "nightly"
        store.add_run(record)
        noise = 1 + SPREAD * rng.standard_normal((2 * cases, 2))
        for index in range(2 * cases):
            stepped = index >= cases
            step = 1.05 if stepped and run >= STEP_RUN else 1.0
            name = f"step{index - cases:03d}" if stepped else f"steady{index:03d}"
            level = medians[index] * step
            store.add_result(record.run_id, measured(name, level * noise[index, 0], ratio=level / 4 * noise[index, 1]))
    return store


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory in memory where the host has one (/dev/shm): 12,000 commits, each of which waits for a
    disk's flush otherwise, take a minute more there."""
    if not Path("/dev/shm").is_dir():
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="bench-history-") as directory:
        yield Path(directory)


def test_synthetic_histories_through_the_store_false_alarms_and_detections(fast_dir: Path) -> None:
    """Acceptance 1: at most 5 % of steady series show a change point; at least 95 % of stepped ones do,
    each change point within 3 runs of run 40."""
    store = synthetic_store(f"sqlite:///{fast_dir / 'history.sqlite'}")
    series = analyse(build_series(store.history()), DetectionOptions(), "now")
    assert len(series) == 2 * SERIES and all(len(one.points) == RUNS for one in series)
    assert {one.key.figure for one in series} == {"ratio", "median_ms"}
    steady = [one for one in series if one.key.model.startswith("steady")]
    stepped = [one for one in series if one.key.model.startswith("step")]
    false_alarms = sum(bool(one.change_points) for one in steady)
    found = sum(
        bool(one.change_points) and all(abs(c.index + 1 - STEP_RUN) <= 3 for c in one.change_points) for one in stepped
    )
    print(f"steady series with a change point: {false_alarms}/{SERIES}; stepped found within 3 runs: {found}/{SERIES}")
    assert false_alarms <= 0.05 * SERIES
    assert found >= 0.95 * SERIES
    change = next(c for one in stepped for c in one.change_points)
    assert change.direction == "regression" and 1.03 < change.ratio < 1.07
    assert change.revision == f"rev{change.index + 1:03d}" and change.p_value < 1e-4
    store.replace_change_points([one.key for one in series], [c for one in series for c in one.change_points])
    stored = store.change_points()
    assert len(stored) == sum(len(one.change_points) for one in series)
    assert {row["direction"] for row in stored} <= {"regression", "improvement"}


def point(run: int, value: float, half_width: float = 0.03, cv: float = 0.02) -> HistoryPoint:
    low, high = value * (1 - half_width), value * (1 + half_width)
    return HistoryPoint(
        f"run{run:02d}", (START + timedelta(hours=run)).isoformat(), f"rev{run:02d}", None, None, "machine", "host",
        "m", "onnx-fp32", "cpu", "onnxruntime", value, low, high, cv, None, None, None,
    )  # fmt: skip


def steady_with_one_slow_run(**slow: float) -> list[HistoryPoint]:
    """Thirty steady runs (the last of them 30 % slower, with `slow`'s interval or CV)."""
    rng = np.random.default_rng(7)
    rows = [point(run, 1.0 + SPREAD * rng.standard_normal()) for run in range(1, 30)]
    return [*rows, point(30, 1.3, **slow)]


@pytest.mark.parametrize(
    ("slow", "found"),
    [({}, True), ({"half_width": 0.25}, False), ({"cv": 0.4}, False)],
    ids=["quiet", "wide-interval", "high-variation"],
)
def test_a_noisy_run_cannot_make_a_change_point_on_its_own(slow: dict, found: bool) -> None:
    """A +30 % last run is a change point when its run was quiet; with a wide interval or the high-variation
    flag it is left out (and said why), so a nightly gate does not fire on it."""
    series = analyse(build_series(steady_with_one_slow_run(**slow)), DetectionOptions(), "now")
    (one,) = series
    assert bool(new_regressions(series, 3)) is found
    assert (one.points[-1].noisy is None) is found
    if not found:
        assert one.points[-1].noisy.startswith("wide interval" if "half_width" in slow else "high variation")


def test_a_flag_every_run_carries_does_not_leave_runs_out() -> None:
    """On a host where every run is flagged high variation, the flag tells no run apart: detection reads
    them all (and the interval test still applies)."""
    rows = [point(run, 1.0 * (1.1 if run > 20 else 1.0), cv=0.3) for run in range(1, 31)]
    (one,) = analyse(build_series(rows), DetectionOptions(), "now")
    assert all(p.noisy is None for p in one.points)
    assert [(c.index, c.direction) for c in one.change_points] == [(20, "regression")]


def test_filters_select_machines_runs_and_the_last_n() -> None:
    rows = [point(run, 1.0) for run in range(1, 11)]
    assert build_series(rows, machine="HOST")[0].points[0].run_id == "run01"
    assert build_series(rows, machine="other") == []
    assert [p.run_id for p in build_series(rows, since=START + timedelta(hours=8))[0].points] == [
        "run08",
        "run09",
        "run10",
    ]
    assert [p.run_id for p in build_series(rows, last=2)[0].points] == ["run09", "run10"]


def test_a_store_written_before_history_is_migrated_with_its_runs_keyed(tmp_path: Path) -> None:
    """A version-1 store file (runs and cases only) gains the run columns, the ratio columns and the
    change_points table; its runs get their machine keys and its cases their paired ratios from the JSON."""
    path = tmp_path / "old.sqlite"
    connection = sqlite3.connect(path)
    for statement in MIGRATIONS[0][1]:
        connection.execute(statement.replace("{serial}", "INTEGER"))
    connection.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
    connection.execute("INSERT INTO schema_migrations VALUES (1, '2026-11-01')")
    environment = {k: v for k, v in ENV.__dict__.items() if k != "accelerator"}  # written before the key existed
    connection.execute(
        "INSERT INTO runs VALUES ('old', '2026-11-01T00:00:00+00:00', 'runner-1', 'ci', 1, ?, ?)",
        (json.dumps(environment), json.dumps(json_safe(NIGHTLY))),
    )
    paired = measured("m", 1.0)
    paired.versus = PairedComparison("torch-fp32", 0.5, [0.48, 0.52], "improvement", 0.01, "", ROUNDS_STATISTIC)
    document = json.dumps(asdict(paired))
    connection.execute(
        "INSERT INTO cases (run_id, model, variant, format, device, backend, status, median_ms, result_json)"
        " VALUES ('old', 'm', 'onnx-fp32', 'onnx', 'cpu', 'onnxruntime', 'ok', 1.0, ?)",
        (document,),
    )
    connection.commit()
    connection.close()
    store = ResultsStore(f"sqlite:///{path}")
    assert store.schema_version() == 2
    (row,) = store.history()
    assert row.machine_key == machine_key(ENV) == "Test CPU, 2 cores, Linux 6, no accelerator"
    assert (row.ratio, row.ratio_lo, row.ratio_hi) == (0.5, 0.48, 0.52)
    assert row.revision is None and store.load_run("old").machine_key == machine_key(ENV)
    assert store.change_points() == []
    with sqlite3.connect(path) as check:
        columns = {r[1] for r in check.execute("PRAGMA table_info(case_summary)")}
    assert {"revision", "label", "machine_key", "ratio", "ratio_lo", "ratio_hi"} <= columns


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_dashboard_queries_of_the_docs_run_on_both_databases(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """docs/dashboards.md's three queries, as printed but for the names of the model, device and machine,
    over a stored history with its change points."""
    from tests.reports.test_history_html import history_store

    url = history_store(tmp_path / "history.sqlite")
    if backend == "postgresql":
        import uuid

        import sqlalchemy as sa

        base = request.getfixturevalue("postgres_url")
        schema = f"d{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        engine.dispose()
        source, url = ResultsStore(url), f"{base}&options=-csearch_path%3D{schema}"
        target = ResultsStore(url)
        for run_id in source.run_ids():
            record = source.load_run(run_id)
            target.add_run(record)
            for result in record.results:
                target.add_result(run_id, result)
    store = ResultsStore(url)
    series = analyse(build_series(store.history()), DetectionOptions(), "now")
    store.replace_change_points([one.key for one in series], [c for one in series for c in one.change_points])
    docs = (Path(__file__).resolve().parents[4] / "docs" / "dashboards.md").read_text()
    queries = [block.split("```")[0] for block in docs.split("```sql\n")[1:]]
    assert len(queries) == 3
    machine = "Test CPU, 8 cores, Linux 6, no accelerator"
    documented = "Apple M2 Pro, 12 cores, Darwin 24.1.0, Apple Neural Engine and GPU"
    with store.engine.connect() as conn:
        rows = [
            conn.execute(store.sa.text(q.replace(documented, machine).replace("'ane'", "'cpu'"))).mappings().all()
            for q in queries
        ]
    series_rows, variant_rows, latest_rows = rows
    assert len(series_rows) == 30
    assert [(r["revision"], r["change"]) for r in series_rows if r["change"]] == [("v1.18", "regression")]
    assert {r["variant"] for r in variant_rows} == {"onnx-int8"} and len(variant_rows) == 30
    assert len(latest_rows) == 3 and all(r["revision"] == "v1.30" for r in latest_rows)
    assert {(r["variant"], r["regressions"]) for r in latest_rows} == {
        ("torch-fp32", 0),
        ("onnx-int8", 2),
        ("onnx-fp32", 0),
    }
