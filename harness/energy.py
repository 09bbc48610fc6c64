"""Energy per inference. Only the CPU-time proxy exists so far; its source is always named."""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness.schema import EnergyStats


@dataclass
class CpuTimeWindow:
    """CPU milliseconds this process (all its threads) spent over a window of inferences."""

    start: float = 0.0

    def begin(self) -> None:
        self.start = time.process_time()

    def end(self, inferences: int) -> EnergyStats:
        spent_ms = (time.process_time() - self.start) * 1000
        return EnergyStats(source="cpu-time", cpu_ms_per_inference=spent_ms / max(inferences, 1))
