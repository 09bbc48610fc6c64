"""The executor seam: where a worker's job runs. The parent side (the runner, preparation, staging,
pairing, `bench ab`) describes each worker as a `Job` and hands it to an `Executor`, which runs it
and returns the typed messages it sent (`harness.process.messages`) in a `WorkerOutcome`.

A job is data: a module-level function (it pickles by reference) and picklable records for arguments
(a `WorkerSpec` and whether to check parity, a `PairedPlan`, a preparation's settings), with its timeout
and log. `LocalExecutor`, a fresh spawned process on this host per job (`run_isolated`), is the one
executor today; another (a cluster's) is one new module implementing `run`, handed to `Runner`, with no
change to the code that makes the jobs. The Protocol sits here, in the process room, rather than in
`harness.orchestrate`: pairing's series, a layer below the orchestration, hands its paired processes to
the executor too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.process.isolation import WorkerOutcome, run_isolated, start_templates


@dataclass(frozen=True)
class Job:
    """One worker: `target(*args, send)`, with the limits it runs under."""

    target: Callable[..., None]
    args: tuple[Any, ...]
    timeout_s: float
    log_path: Path | None = None
    per_message: bool = False  # the timeout runs from the worker's last message, not from its start
    exit_at_once: bool = False  # a measuring worker: it ends without finalising (`run_isolated` says why)
    preload: tuple[str, ...] | None = None  # fork it from the template that imported these (`run_isolated`)
    device: str | None = None  # the device it runs a model on (None: it runs none), for an executor that places jobs
    measuring: bool = False  # it times the device (an unpaired case or a paired process): it needs the machine alone


class Executor(Protocol):
    def run(
        self, job: Job, on_message: Callable[[Any], None] | None = None, cancel: threading.Event | None = None
    ) -> WorkerOutcome:
        """Run the job; relay each message to `on_message` as it arrives; stop when `cancel` is set."""
        ...

    def start_templates(self, preloads: Iterable[tuple[str, ...]]) -> None:
        """Start the templates these jobs will fork from, so their imports overlap the run's preparation
        rather than delay its first measurement (an executor that starts its processes elsewhere: nothing)."""
        ...

    def device_reason(self, backend: str, device: str, on_this_host: Callable[[], str | None]) -> str | None:
        """Why no machine this executor runs jobs on can run `backend` on `device` (None: one can), asked
        when a run is planned; `on_this_host` is this host's backend's answer, which an executor that runs
        jobs elsewhere does not ask."""
        ...


class LocalExecutor:
    """Each job in a fresh spawned process on this host."""

    def run(
        self, job: Job, on_message: Callable[[Any], None] | None = None, cancel: threading.Event | None = None
    ) -> WorkerOutcome:
        return run_isolated(
            job.target,
            job.args,
            job.timeout_s,
            on_message,
            job.log_path,
            job.per_message,
            cancel,
            job.exit_at_once,
            job.preload,
        )

    def start_templates(self, preloads: Iterable[tuple[str, ...]]) -> None:
        start_templates(preloads)

    def device_reason(self, backend: str, device: str, on_this_host: Callable[[], str | None]) -> str | None:
        return on_this_host()


LOCAL = LocalExecutor()
