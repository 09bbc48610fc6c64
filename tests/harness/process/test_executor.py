"""The executor seam: every worker of a run is a `Job` handed to the run's executor, as data another
executor (a cluster's) could ship."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness.orchestrate.runner import Runner
from harness.process.executor import LOCAL, Job
from harness.process.isolation import WorkerOutcome
from harness.process.specs import WorkerSpec
from profiles.schema import load_profile


class _Recording:
    """An executor of its own: records each job (pickled, as a remote one would ship it) and runs it locally."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def run(
        self, job: Job, on_message: Callable[[Any], None] | None = None, cancel: threading.Event | None = None
    ) -> WorkerOutcome:
        self.jobs.append(pickle.loads(pickle.dumps(job)))
        return LOCAL.run(job, on_message, cancel)

    def start_templates(self, preloads: Iterable[tuple[str, ...]]) -> None:
        LOCAL.start_templates(preloads)

    def device_reason(self, backend: str, device: str, on_this_host: Callable[[], str | None]) -> str | None:
        return LOCAL.device_reason(backend, device, on_this_host)


def test_every_worker_of_a_run_goes_through_the_runs_executor(tmp_path: Path) -> None:
    overrides = {"measure.processes": 2, "measure.budget_s": 0.2, "paired.max_s": 2.0}
    executor = _Recording()
    record = Runner(load_profile("smoke", overrides), tmp_path / "r.json", executor=executor).run()
    assert [r.status for r in record.results] == ["ok", "ok"]
    targets = [job.target.__name__ for job in executor.jobs]
    assert targets[0] == "prepare_model" and targets.count("measure_case") == 4, targets
    assert "measure_paired" in targets and set(targets) == {"prepare_model", "measure_case", "measure_paired"}
    measuring = [job for job in executor.jobs if job.target.__name__ == "measure_case"]
    assert all(job.exit_at_once and isinstance(job.args[0], WorkerSpec) for job in measuring)
    timing = [job for job in executor.jobs if job.target.__name__ in ("measure_case", "measure_paired")]
    assert all(job.measuring and job.device == "cpu" for job in timing)  # what a cluster places them by
    assert not any(job.measuring or job.device for job in executor.jobs if job not in timing)
    assert [job.args[1] for job in measuring].count(True) == 2  # parity in each case's first process
    assert executor.jobs[0].per_message and all(job.log_path is not None for job in executor.jobs)
