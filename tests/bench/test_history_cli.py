"""`bench history` over `bench run ci` runs of a user model whose test-only build switch makes its ONNX build
10 % slower from run 8 on: the nightly gate names run 8's revision, passes the same history without the
switch, and PostgreSQL finds the change points SQLite finds.

Twelve real runs (test_twelve_real_runs) take minutes and a quiet machine: on a shared 2-core VM the same
build's median moved 20 to 40 % from one run to the next. The CI-sized test makes its history of one real
run's record, replicated with a 1.5 % scatter, the switch's 10 % applied to the ONNX build's figures."""

from __future__ import annotations

import copy
import json
import subprocess
import textwrap
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from harness.host import code_revision
from harness.results.schema import RunRecord, load_results, machine_key
from harness.results.store import ResultsStore
from tests.conftest import bench, one_error_line

pytest.importorskip("otava", reason="apache-otava is not installed (pip install 'ondevice-bench[history]')")

SWITCH = "HISTORY_TEST_SLOWER_BUILD"
MODELS = textwrap.dedent(
    f"""
    import os

    import torch


    class Stack(torch.nn.Module):
        # ten layers; the build switch exports an eleventh, an identity: the ONNX build does 10 % more work
        def __init__(self, slower):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(512, 512) for _ in range(10))
            self.extra = torch.nn.Linear(512, 512)
            with torch.no_grad():
                self.extra.weight.copy_(torch.eye(512))
                self.extra.bias.zero_()
            self.slower = slower

        def forward(self, x):
            for layer in self.layers:
                x = torch.relu(layer(x))
            if self.slower and torch.onnx.is_in_onnx_export():
                x = self.extra(x)
            return x


    def stack():
        torch.manual_seed(0)
        return Stack(bool(os.environ.get("{SWITCH}"))).eval(), torch.randn(1, 512)
    """
)
FLAGS = ("-m", "historymodels:stack", "-v", "torch-fp32", "-v", "onnx-fp32", "--processes", "2", "--budget", "0.4")
START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def real_run(root: Path, db: str, number: int, slower: bool) -> Path:
    """One `bench run ci` of the user model, revision `revNN`, with or without the build switch."""
    path = root / f"run{number:02d}-{'slower' if slower else 'same'}.json"
    proc = bench(
        "run", "ci", *FLAGS, "--pair-budget", "6", "--revision", f"rev{number:02d}", "--label", "nightly",
        "--json", str(path), "--db", db, cwd=root, env={SWITCH: "1"} if slower else {SWITCH: ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


def copy_runs(source: str, destination: str) -> None:
    """Every run of one store written into another through the store's own API."""
    src, dst = ResultsStore(source), ResultsStore(destination)
    for run_id in src.run_ids():
        record = src.load_run(run_id)
        dst.add_run(record)
        for result in record.results:
            dst.add_result(run_id, result)


def history(db: str, out: Path, *flags: str) -> tuple[int, str, dict]:
    """`bench history` with `flags`: its exit code, stdout and the --json it wrote (into `out`)."""
    json_path = out / f"history-{uuid.uuid4().hex[:8]}.json"
    proc = bench("history", "--db", db, "--json", str(json_path), *flags)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout, json.loads(json_path.read_text())


def change_points(document: dict) -> list[tuple]:
    return [
        (s["model"], s["variant"], s["device"], s["figure"], c["run_id"], c["revision"], c["direction"], c["ratio"])
        for s in document["series"]
        for c in s["change_points"]
    ]


def replicated(record: RunRecord, number: int, rng: np.random.Generator) -> RunRecord:
    """`record` as run `number` of a nightly history: its own id, revision and time, and each figure moved
    by a seeded 1.5 % scatter (a run's spread on a quiet machine), so the series have noise to see through."""
    run = copy.deepcopy(record)
    run.run_id = f"{record.run_id}-{number:02d}"
    run.revision, run.created_at = f"rev{number:02d}", (START + timedelta(hours=number)).isoformat()
    for result in run.results:
        if result.latency_ms is not None:
            scale = 1 + 0.015 * rng.standard_normal()
            lat = result.latency_ms
            result.latency_ms = replace(lat, median=lat.median * scale, ci95=[v * scale for v in lat.ci95])
        if result.versus is not None:
            scale = 1 + 0.015 * rng.standard_normal()
            ratio = result.versus
            result.versus = replace(ratio, ratio=ratio.ratio * scale, ci95=[v * scale for v in ratio.ci95])
    return run


def write_history(db: str, records: list[RunRecord]) -> None:
    store = ResultsStore(db)
    for record in records:
        store.add_run(record)
        for result in record.results:
            store.add_result(record.run_id, result)


def switched_build(record: RunRecord) -> RunRecord:
    """`record` as the build switch builds it: the ONNX build 10 % slower, the reference as before."""
    run = copy.deepcopy(record)
    for result in run.results:
        if result.variant == "onnx-fp32":
            lat, ratio = result.latency_ms, result.versus
            result.latency_ms = replace(lat, median=lat.median * 1.1, ci95=[v * 1.1 for v in lat.ci95])
            result.versus = replace(ratio, ratio=ratio.ratio * 1.1, ci95=[v * 1.1 for v in ratio.ci95])
    return run


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> RunRecord:
    """One real `bench run ci` of the user model, as built."""
    root = tmp_path_factory.mktemp("nightly")
    (root / "historymodels.py").write_text(MODELS)
    return load_results(real_run(root, f"sqlite:///{root / 'runs.sqlite'}", 1, slower=False))


def test_bench_run_records_the_revision_label_and_machine_key(nightly: RunRecord, tmp_path: Path) -> None:
    assert (nightly.revision, nightly.label, nightly.revision_describe) == ("rev01", "nightly", None)
    assert nightly.machine_key == machine_key(nightly.environment)
    assert nightly.machine_key.startswith(f"{nightly.environment.cpu}, {nightly.environment.cores} cores, ")
    onnx = next(r for r in nightly.results if r.variant == "onnx-fp32")
    assert onnx.versus is not None and onnx.versus.against == "torch-fp32"
    (tmp_path / "repo").mkdir()
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
         "--allow-empty", "-m", "x"], check=True,
    )  # fmt: skip
    commit, describe = code_revision(tmp_path / "repo")
    assert commit is not None and len(commit) == 40 and describe == commit[:7]
    assert code_revision(tmp_path) == (None, None)


def test_the_nightly_gate_names_the_revision_a_slower_build_came_in_and_postgres_agrees(
    nightly: RunRecord, tmp_path: Path, postgres_url: str
) -> None:
    """Acceptance 2 (the CI-sized version) and 3: twelve nightly runs, the first seven as built and the last
    five with the switch's build."""
    rng = np.random.default_rng(8)
    slower = switched_build(nightly)
    switched = [replicated(nightly if n < 8 else slower, n, rng) for n in range(1, 13)]
    steady = [replicated(nightly, n, rng) for n in range(1, 13)]
    db, steady_db = f"sqlite:///{tmp_path / 'switched.sqlite'}", f"sqlite:///{tmp_path / 'steady.sqlite'}"
    write_history(db, switched)
    write_history(steady_db, steady)

    code, stdout, document = history(db, tmp_path, "--fail-on-new", "5", "--update")
    assert code == 1, stdout
    gate = [line for line in stdout.splitlines() if line.startswith("new regression:")]
    assert {line.split(" on ")[0] for line in gate} == {
        "new regression: historymodels:stack onnx-fp32 cpu median_ms",
        "new regression: historymodels:stack onnx-fp32 cpu ratio",
    }, stdout
    assert all("at revision rev08" in line for line in gate), stdout
    stored = ResultsStore(db).change_points()
    assert [(r["run_id"], r["revision"]) for r in stored] == [(c[4], c[5]) for c in change_points(document)]

    code, stdout, _ = history(steady_db, tmp_path, "--fail-on-new", "5")
    assert code == 0, stdout
    assert "new regression" not in stdout

    schema = f"h{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    pg = f"{postgres_url}&options=-csearch_path%3D{schema}"
    copy_runs(db, pg)
    pg_code, _, pg_document = history(pg, tmp_path, "--fail-on-new", "5")
    assert pg_code == 1
    assert change_points(pg_document) == change_points(document) != []


@pytest.mark.slow
def test_twelve_real_runs(tmp_path: Path) -> None:
    """Acceptance 2 in full: twelve real `bench run ci` runs, the switch from run 8 on, then the gate; and
    the same twelve without the switch (runs 1 to 7 are shared) pass it."""
    (tmp_path / "historymodels.py").write_text(MODELS)
    db, steady = f"sqlite:///{tmp_path / 'switched.sqlite'}", f"sqlite:///{tmp_path / 'steady.sqlite'}"
    for number in range(1, 8):
        real_run(tmp_path, db, number, slower=False)
    copy_runs(db, steady)
    for number in range(8, 13):
        real_run(tmp_path, db, number, slower=True)
        real_run(tmp_path, steady, number, slower=False)
    code, stdout, _ = history(db, tmp_path, "--fail-on-new", "5")
    assert code == 1 and "at revision rev08" in stdout, stdout
    code, stdout, _ = history(steady, tmp_path, "--fail-on-new", "5")
    assert code == 0, stdout


def test_bad_history_flags_are_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    assert "no store there yet" in one_error_line(bench("history", "--db", db))
    ResultsStore(db)
    assert "--last 0" in one_error_line(bench("history", "--db", db, "--last", "0"))
    assert "--since 'yesterday'" in one_error_line(bench("history", "--db", db, "--since", "yesterday"))
    assert "--p-value 2.0" in one_error_line(bench("history", "--db", db, "--p-value", "2"))
    assert "no store there yet" in one_error_line(bench("history", cwd=tmp_path))
    proc = bench("history", "--db", db, "--fail-on-new", "3")
    assert proc.returncode == 1 and "matches the filters" in proc.stderr
