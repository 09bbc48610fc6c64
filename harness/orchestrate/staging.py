"""Artifacts staged in the parent, once per artifact and device, before any process measures them, where
their backend says so (`Backend.staging`, `Backend.stage`). ExecuTorch is the one that does today
(`harness.backends.executorch.stage_program`): a Core ML program rewritten for the device's compute
units with its compute plan read, and a program built elsewhere given notes read from it. Staging imports
ExecuTorch's exporter (seconds), so one isolated worker stages every program of a run; the measuring
processes then load what it wrote and never import the exporter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.process.executor import LOCAL, Executor, Job
from harness.process.messages import ProgramStaged
from profiles.errors import first_line

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageJob:
    """An artifact its backend stages for a device, into a directory of its own that does not exist yet."""

    backend: str
    source: str
    device: str
    directory: str
    rewrite: bool  # what `Backend.staging` said: a Core ML program rewritten for the device


def stage_worker(jobs: list[StageJob], send: Callable[[Any], None]) -> None:
    """Worker: each job staged, one message each; one program that cannot be staged fails alone."""
    from harness.backends.registry import backends

    for index, job in enumerate(jobs):
        try:
            staged = backends()[job.backend].stage(Path(job.source), job.device, Path(job.directory), job.rewrite)
        except Exception as exc:  # any program's failure is that program's, not the run's
            logger.exception("staging %s for %s failed", job.source, job.device)
            send(ProgramStaged(index, None, first_line(exc)))
            continue
        send(ProgramStaged(index, str(staged)))


def stage_isolated(
    jobs: list[StageJob], timeout_s: float, log: Path, executor: Executor = LOCAL
) -> list[ProgramStaged]:
    """Every job's outcome, in order: a worker dying part-way fails the jobs it had not staged."""
    if not jobs:
        return []
    outcome = executor.run(Job(stage_worker, (jobs,), timeout_s, log, per_message=True))
    staged = {m.index: m for m in outcome.messages if isinstance(m, ProgramStaged)}
    why = f"staging worker {outcome.failure or 'sent no result'} (log: {log})"
    return [staged.get(i, ProgramStaged(i, None, why)) for i in range(len(jobs))]
