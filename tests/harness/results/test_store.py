"""The results store: the same tests against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness.results.schema import Environment, Result, RunRecord, load_results
from harness.results.stats import summarise
from harness.results.store import LATEST_VERSION, ResultsStore
from profiles.errors import ConfigError, SchemaError
from profiles.schema import load_profile
from tests.store_writer import open_and_write


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'results.sqlite'}"
    base = request.getfixturevalue("postgres_url")
    schema = f"t{uuid.uuid4().hex[:10]}"  # one schema per test, so tests do not see each other's rows
    engine = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return f"{base}&options=-csearch_path%3D{schema}"


def make_run(cases: int = 3, run_id: str | None = None) -> RunRecord:
    env = Environment("Linux 6", "x86_64", "cpu", 2, "3.11", {"torch": "2.13.0"}, {"intra_op": 1}, "host-a")
    results = []
    for i in range(cases):
        result = Result(f"model{i}", "onnx-fp32", "onnx", "cpu", "onnxruntime", "ok")
        samples = [[1.0 + i, 1.1 + i, 0.9 + i], [1.05 + i, 1.0 + i]]
        result.latency_ms = summarise(samples, 1)
        result.samples_ms = samples
        results.append(result)
    skipped = Result("model0", "coreml-fp16", "coreml", "cpu", "coreml", "skipped", reason="Core ML runs only on macOS")
    results.append(skipped)
    return RunRecord(run_id or uuid.uuid4().hex[:12], "2026-11-22T00:00:00+00:00", env, load_profile("smoke"), results)


def store_run(store: ResultsStore, run: RunRecord) -> None:
    store.add_run(run)
    for result in run.results:
        store.add_result(run.run_id, result)


def test_migrations_are_versioned_and_idempotent(url: str) -> None:
    store = ResultsStore(url)
    assert store.schema_version() == LATEST_VERSION
    again = ResultsStore(url)
    assert again.schema_version() == LATEST_VERSION
    with again.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM schema_migrations")).scalar() == LATEST_VERSION


def test_a_run_round_trips_and_the_flat_view_has_one_row_per_case(url: str) -> None:
    store = ResultsStore(url)
    run = make_run()
    store_run(store, run)
    assert store.load_run(run.run_id) == run
    assert run.run_id in store.run_ids()
    with store.engine.connect() as conn:
        query = "SELECT model, variant, status, median_ms FROM case_summary ORDER BY case_id"
        rows = conn.execute(sa.text(query)).all()
        assert len(rows) == 4
        assert rows[0][:3] == ("model0", "onnx-fp32", "ok")
        assert rows[0][3] == pytest.approx(1.0125)  # median of the process medians 1.0 and 1.025
        assert rows[3][2] == "skipped" and rows[3][3] is None
        assert conn.execute(sa.text("SELECT COUNT(*) FROM samples")).scalar() == 3 * 5


def test_unknown_run_id_is_one_line(url: str) -> None:
    with pytest.raises(SchemaError, match=r"run 'nope' is not in the store"):
        ResultsStore(url).load_run("nope")


def _writer(url: str, prefix: str, runs: int) -> None:
    store = ResultsStore(url)
    for index in range(runs):
        store_run(store, make_run(cases=5, run_id=f"{prefix}-{index}"))


def test_concurrent_writers_lose_nothing(url: str) -> None:
    ResultsStore(url)  # schema in place; the writers also migrate, under the lock
    context = mp.get_context("spawn")
    writers = [context.Process(target=_writer, args=(url, f"w{i}", 6)) for i in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    store = ResultsStore(url)
    assert len(store.run_ids()) == 18
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM cases")).scalar() == 18 * 6
        assert conn.execute(sa.text("SELECT COUNT(*) FROM samples")).scalar() == 18 * 5 * 5
    loaded = store.load_run("w1-3")
    assert replace(loaded, run_id="x") == replace(make_run(cases=5, run_id="x"), created_at=loaded.created_at)


def test_bad_urls_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        ResultsStore("::nonsense::")
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        ResultsStore("mysql://localhost/x")
    with pytest.raises(ConfigError, match="cannot open the store"):
        ResultsStore("postgresql://nobody@/x?host=/nonexistent-socket-dir&connect_timeout=2")


@pytest.mark.slow
def test_two_bench_runs_write_one_store_at_once(tmp_path: Path) -> None:
    """Two real `bench run` processes appending to one SQLite store concurrently."""
    (tmp_path / "tinymodels.py").write_text(
        "import torch\n\n\ndef tiny():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Linear(64, 8).eval(), torch.randn(1, 64)\n"
    )
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    args = [sys.executable, "-m", "bench", "run", "smoke", "-m", "tinymodels:tiny", "--budget", "0.6", "--db", url]
    procs = [
        subprocess.Popen(
            [*args, "--json", str(tmp_path / f"r{i}.json")],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stdout + stderr
        assert "warning: results store" not in stderr
    store = ResultsStore(url)
    run_ids = {json.loads((tmp_path / f"r{i}.json").read_text())["run_id"] for i in range(2)}
    assert set(store.run_ids()) == run_ids
    for run_id in run_ids:
        stored = store.load_run(run_id)
        from_file = next(
            load_results(tmp_path / f"r{i}.json")
            for i in range(2)
            if json.loads((tmp_path / f"r{i}.json").read_text())["run_id"] == run_id
        )
        assert stored.results == from_file.results


@pytest.mark.slow
def test_four_runs_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """What four `bench run`s do first, at the same instant, ten times over: open a store that does not
    exist yet (migrations, the switch to WAL), then write a run. In the first round another writer holds
    the database's lock for longer than SQLite's default 5 s wait, as a long transaction would; none may
    fail with 'database is locked'."""
    context = mp.get_context("spawn")
    for repetition in range(10):
        database = tmp_path / f"fresh{repetition}.sqlite"
        url = f"sqlite:///{database}"
        ready, go = context.Semaphore(0), context.Event()
        writers = [context.Process(target=open_and_write, args=(url, f"r{i}", ready, go)) for i in range(4)]
        for writer in writers:
            writer.start()
        for _ in writers:
            assert ready.acquire(timeout=120)
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        go.set()
        if repetition == 0:
            time.sleep(6.0)  # the hold itself: a writer keeping the lock this long is the condition tested
        holder.execute("COMMIT")
        holder.close()
        for writer in writers:
            writer.join(120)
        assert [w.exitcode for w in writers] == [0, 0, 0, 0], f"repetition {repetition}"
        assert sorted(ResultsStore(url).run_ids()) == ["r0", "r1", "r2", "r3"]


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    impostor = tmp_path / "results.sqlite"
    impostor.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"not a results store: file is not a database"):
        ResultsStore(f"sqlite:///{impostor}")
