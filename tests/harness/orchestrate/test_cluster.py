"""The Ray executor on a real two-node cluster on this host (`ray.cluster_utils.Cluster`): node A is the
head and advertises the CPU; node B advertises a GPU (this host has none, so its backends refuse the
cases placed there, with B named); neither advertises the ANE. Each node has one measuring slot. The
tests on the cluster are `slow` (100 s on two cores, past CI's share of its 15 minutes); the refusals run
everywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from harness.orchestrate.cluster.executor import RayExecutor, job_resources
from harness.orchestrate.cluster.node import MISSING, confirmed_devices, node_resources, ray_start_command
from harness.orchestrate.runner import Runner
from harness.process.executor import Job
from harness.process.isolation import WorkerOutcome
from harness.process.messages import Stage
from tests.bench.test_run_keys import GOLDEN, key_paths
from tests.conftest import ROOT, bench, one_error_line
from tests.harness.orchestrate.cluster_jobs import busy as _busy
from tests.harness.orchestrate.cluster_jobs import hold as _hold
from tests.harness.orchestrate.cluster_jobs import stamp as _stamp

on_cluster = pytest.mark.slow
SMALL = ["--processes", "1", "--budget", "0.2", "--pair-budget", "2"]
NO_RAY = "ray is not installed (pip install 'ondevice-bench[cluster]')"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, RayExecutor, dict[str, str]]]:
    """The cluster's address, an executor connected to it, and each node's name by what it advertises."""
    ray = pytest.importorskip("ray", reason=NO_RAY)
    from ray.cluster_utils import Cluster

    two = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"bench-cpu": 1, "bench-measure": 1}, "include_dashboard": False},
    )
    two.add_node(num_cpus=2, resources={"bench-gpu": 1, "bench-measure": 1})
    two.wait_for_nodes()
    executor = RayExecutor(two.address)
    names = {}
    for node in ray.nodes():
        for device in ("cpu", "gpu"):
            if f"bench-{device}" in node["Resources"]:
                names[device] = executor.node_name(node["NodeID"])
    try:
        yield two.address, executor, names
    finally:
        ray.shutdown()
        two.shutdown()


def _parallel(executor: RayExecutor, jobs: list[Job]) -> list[WorkerOutcome]:
    outcomes: list[WorkerOutcome | None] = [None] * len(jobs)

    def one(index: int) -> None:
        outcomes[index] = executor.run(jobs[index])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]


@on_cluster
def test_bench_run_smoke_on_the_cluster_writes_every_case_with_its_node_and_a_local_runs_keys(
    cluster, tmp_path: Path
) -> None:
    address, _, names = cluster
    out, store = tmp_path / "r.json", tmp_path / "s.sqlite"
    proc = bench(
        "run", "smoke", "--cluster", address, *SMALL, "-d", "cpu", "-d", "gpu", "-d", "ane",
        "--json", str(out), "--db", f"sqlite:///{store}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    by_device: dict[str, list[dict[str, Any]]] = {}
    for result in data["results"]:
        by_device.setdefault(result["device"], []).append(result)
    assert [(r["status"], r["node"]) for r in by_device["cpu"]] == [("ok", names["cpu"])] * 2
    for result in by_device["gpu"]:  # B advertises a GPU its backends refuse: B's own answer, at plan time
        assert result["status"] == "skipped" and result["node"] is None
        assert result["reason"].startswith(f"no node of the cluster runs {result['backend']} on gpu ({names['gpu']}: ")
    assert all(r["status"] == "skipped" and r["node"] is None for r in by_device["ane"])
    assert all("no node of the cluster" in r["reason"] and "bench-ane" in r["reason"] for r in by_device["ane"])
    # a local smoke run's keys; the map of variants a decision excluded is keyed by data: here also the
    # variants of the devices skipped
    keys = {key for key in key_paths(data) if not key.startswith("decisions[].excluded.")}
    assert keys == set(GOLDEN.read_text().split())
    assert f"holds 6 of 6 cases of run {data['run_id']}" in proc.stdout


@on_cluster
def test_a_measuring_job_runs_only_on_the_node_with_its_device_and_others_anywhere(cluster, tmp_path: Path) -> None:
    _, executor, names = cluster
    measuring = [Job(_stamp, (str(tmp_path / f"m{i}"),), 60, device="cpu", measuring=True) for i in range(3)]
    gpu = Job(_stamp, (str(tmp_path / "g"),), 60, device="gpu", measuring=True)
    preparing = Job(_stamp, (str(tmp_path / "p"),), 60)
    assert job_resources(preparing) == {} and job_resources(gpu) == {"bench-gpu": 1.0, "bench-measure": 1.0}
    relayed: list[Any] = []
    outcomes = _parallel(executor, measuring)
    assert [(o.failure, o.node) for o in outcomes] == [(None, names["cpu"])] * 3
    assert executor.run(gpu, relayed.append).node == names["gpu"]
    assert relayed == [Stage("stamped")]  # the worker's messages come back; a worker on a node imports no Ray
    assert executor.run(preparing).node in names.values()


@on_cluster
def test_no_two_measuring_jobs_overlap_on_a_node(cluster, tmp_path: Path) -> None:
    _, executor, names = cluster
    jobs = [Job(_busy, (0.3,), 60, device="cpu", measuring=True) for _ in range(4)]
    jobs += [Job(_busy, (0.3,), 60) for _ in range(2)]  # preparations: no measuring slot
    outcomes = _parallel(executor, jobs)
    assert all(o.failure is None for o in outcomes), [o.failure for o in outcomes]
    spans = sorted((o.spawned_at, o.ended_at) for o in outcomes[:4])
    assert all(o.node == names["cpu"] for o in outcomes[:4])
    assert all(later[0] >= earlier[1] for earlier, later in pairwise(spans)), spans


@on_cluster
def test_killing_a_nodes_worker_fails_only_its_running_job_with_the_reason(cluster, tmp_path: Path) -> None:
    _, executor, names = cluster
    held = tmp_path / "held"
    results: dict[str, WorkerOutcome] = {}
    runner = threading.Thread(
        target=lambda: results.update(held=executor.run(Job(_hold, (str(held),), 120, device="gpu", measuring=True)))
    )
    runner.start()
    deadline = time.monotonic() + 60
    while not held.exists() and time.monotonic() < deadline:  # the job is running on node B
        time.sleep(0.05)
    other = executor.run(Job(_stamp, (str(tmp_path / "other"),), 60, device="cpu", measuring=True))
    os.kill(int(held.read_text()), signal.SIGKILL)  # node B's Ray worker running the held job
    runner.join(timeout=60)
    lost = results["held"]
    assert lost.failure is not None and lost.failure.startswith(f"node {names['gpu']}: its Ray worker died"), lost
    assert lost.node == names["gpu"]
    assert other.failure is None and other.node == names["cpu"]
    assert executor.run(Job(_stamp, (str(tmp_path / "after"),), 60, device="gpu", measuring=True)).failure is None


@on_cluster
def test_the_runner_names_the_node_of_each_result_in_process(cluster, tmp_path: Path) -> None:
    from profiles.schema import load_profile

    _, executor, names = cluster
    overrides = {"measure.processes": 1, "measure.budget_s": 0.2, "paired.max_s": 2.0}
    record = Runner(load_profile("smoke", overrides), tmp_path / "r.json", executor=executor).run()
    assert [(r.status, r.node) for r in record.results] == [("ok", names["cpu"])] * 2
    assert record.results[1].versus is not None  # the paired process ran on the cluster too


def test_without_ray_the_cluster_flag_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    code = "import sys; sys.modules['ray'] = None; from bench.cli import main; main()"
    args = ["run", "smoke", "--cluster", "auto", "--json", str(tmp_path / "r.json"), "--db", f"sqlite:///{tmp_path}/s"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert one_error_line(proc) == f"error: {MISSING}"


def test_a_malformed_cluster_address_and_node_start_without_a_role_are_refused(tmp_path: Path) -> None:
    proc = bench("run", "smoke", "--cluster", "nowhere", "--json", str(tmp_path / "r.json"), cwd=tmp_path)
    assert "expected ray://HOST:PORT, HOST:PORT or auto" in one_error_line(proc)
    assert "give --head or --address" in one_error_line(bench("node", "start"))
    assert "expected the head's HOST:PORT" in one_error_line(bench("node", "start", "--address", "head"))


def test_a_node_advertises_only_the_devices_its_backends_confirm_and_one_measuring_slot() -> None:
    from harness.backends.registry import backends

    pytest.importorskip("ray", reason=NO_RAY)
    devices = confirmed_devices()
    assert "cpu" in devices
    for device in ("gpu", "ane"):
        confirmed = any(cls().available(device) is None for cls in backends().values())
        assert (device in devices) == confirmed
    resources = node_resources(devices)
    assert resources["bench-measure"] == 1 and {f"bench-{d}" for d in devices} | {"bench-measure"} == set(resources)
    command = ray_start_command(False, "10.0.0.2:6379", resources)
    assert command[1:3] == ["start", "--address=10.0.0.2:6379"]
    assert json.loads(command[3].removeprefix("--resources=")) == resources
