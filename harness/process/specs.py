"""What a parent hands a measuring process: the case spec, and the arrays it reads from the files the
prepare step wrote."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@dataclass(frozen=True)
class WorkerSpec:
    """A serialisable case plus how to measure it: what crosses the process boundary."""

    model_ref: str
    backend: str
    device: str
    artifact_path: str
    inputs_path: str
    parity_path: str | None
    task: str  # classification | embedding | generation | generic: which parity metrics apply
    gate: dict[str, float]  # the parity gate's thresholds by key (profiles.schema.Gate)
    parity_source: str
    warmup: int
    budget_s: float
    min_sample_ms: float
    threads: int
    calls_per_sample: int | None  # None: calibrate here (the first process of a case)


def npz_arrays(path: str, prefix: str) -> list[np.ndarray]:
    """The arrays named PREFIX0, PREFIX1, ... of an .npz file, in numeric order (input_10 after input_9)."""
    with np.load(path) as data:
        keys = sorted((k for k in data.files if k.startswith(prefix)), key=lambda k: int(k.rsplit("_", 1)[1]))
        return [data[k] for k in keys]


def pin_threads(threads: int) -> None:
    """Set the thread-count variables every runtime reads at import, before the child imports any of them
    (0 leaves the runtime's own default)."""
    import os

    if threads > 0:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(threads)
