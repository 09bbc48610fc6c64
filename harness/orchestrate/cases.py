"""The entry point of one case's measuring process: the threads pinned, the backend made, and the case
measured by the worker of its task (a generative decoder or a single forward pass)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.process.specs import WorkerSpec, pin_threads


def measure_case(spec: WorkerSpec, do_parity: bool, send: Callable[[Any], None]) -> None:
    """Runs in the child: the runtimes are imported only after the thread variables are set."""
    pin_threads(spec.threads)
    from harness.backends.registry import backends
    from harness.generation.measure import measure_generation
    from harness.measure.worker import measure_unpaired

    backend = backends()[spec.backend]()
    try:
        if spec.task == "generation":
            measure_generation(backend, spec, do_parity, send)
        else:
            measure_unpaired(backend, spec, do_parity, send)
    finally:
        backend.close()
