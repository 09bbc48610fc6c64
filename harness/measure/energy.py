"""Energy per inference: the best source this host has, always named in the result.

Sources, best first: Apple's IOReport energy counters through `zeus-apple-silicon` (macOS, no root;
CPU + GPU + ANE + DRAM), NVML's total-energy counter (NVIDIA, for `gpu` cases), Linux RAPL package
counters (`/sys/class/powercap`, where readable), and otherwise the CPU time of the worker, which is a
proxy and never reported as millijoules. Counter sources subtract an idle baseline measured the same
way just before the sampling window (`idle_subtracted` says so) because they count the whole machine.
"""

from __future__ import annotations

import logging
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.results.schema import EnergyStats

log = logging.getLogger(__name__)

POWERCAP = Path("/sys/class/powercap")
IDLE_WINDOW_S = 0.5


@dataclass
class CpuTimeWindow:
    """CPU milliseconds this process (all its threads) spent over a window of inferences."""

    start: float = 0.0

    def begin(self) -> None:
        self.start = time.process_time()

    def end(self, inferences: int) -> EnergyStats:
        spent_ms = (time.process_time() - self.start) * 1000
        return EnergyStats(source="cpu-time", cpu_ms_per_inference=spent_ms / max(inferences, 1))


class CounterSource(ABC):
    """A cumulative energy counter in millijoules (whole machine or whole device)."""

    name = "counter"

    @abstractmethod
    def read_mj(self) -> float:
        """Millijoules accumulated so far (only differences between reads mean anything)."""


@dataclass
class RaplDomain:
    energy: Path
    max_range_uj: int


@dataclass
class RaplSource(CounterSource):
    """Package domains of Linux RAPL; each counter wraps at its `max_energy_range_uj`."""

    domains: list[RaplDomain]
    name: str = "rapl"
    last: list[int] = field(default_factory=list)
    total_uj: float = 0.0

    @classmethod
    def find(cls, root: Path = POWERCAP) -> RaplSource | None:
        domains = []
        for zone in sorted(root.glob("intel-rapl:[0-9]*")):
            if zone.name.count(":") != 1:  # top-level package zones only; sub-zones are inside them
                continue
            try:
                max_range = int((zone / "max_energy_range_uj").read_text())
                int((zone / "energy_uj").read_text())
            except (OSError, ValueError):
                continue  # absent or root-only
            domains.append(RaplDomain(zone / "energy_uj", max_range))
        return cls(domains) if domains else None

    def read_mj(self) -> float:
        """Accumulated energy since the first read, wraparound handled (reads must come more often than
        one wrap, which takes minutes on a package domain)."""
        now = [int(d.energy.read_text()) for d in self.domains]
        if self.last:
            for before, after, domain in zip(self.last, now, self.domains, strict=True):
                self.total_uj += after - before if after >= before else after + domain.max_range_uj - before
        self.last = now
        return self.total_uj / 1000.0


class NvmlSource(CounterSource):
    name = "nvml"

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        self.read_mj()

    def read_mj(self) -> float:
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))


class CounterUnreadable(Exception):
    """An energy counter that reads nothing (or stopped reading): the CPU-time proxy stands in, and says why."""


APPLE_CHANNELS = ("cpu_total_mj", "gpu_mj", "gpu_sram_mj", "ane_mj", "dram_mj")


class AppleEnergySource(CounterSource):
    """IOReport 'Energy Model' counters via zeus-apple-silicon: no root needed.

    zeus reports a channel it cannot read as None (a virtualised Mac exposes none). A None is missing, not
    zero: the channels are those the first reading had, named in `missing` otherwise, and a source whose
    first reading had none is refused (`CounterUnreadable`), so the proxy is used instead of 0 mJ."""

    name = "ioreport (zeus-apple-silicon)"

    def __init__(self, monitor: Any = None) -> None:
        if monitor is None:
            from zeus_apple_silicon import AppleEnergyMonitor

            monitor = AppleEnergyMonitor()
        self.monitor = monitor
        first = monitor.get_cumulative_energy()
        self.channels = tuple(c for c in APPLE_CHANNELS if getattr(first, c, None) is not None)
        self.missing = tuple(c for c in APPLE_CHANNELS if c not in self.channels)
        if not self.channels:
            raise CounterUnreadable(
                "zeus-apple-silicon read no IOReport energy channel (every one None, as on a virtualised Mac)"
            )

    def read_mj(self) -> float:
        energy = self.monitor.get_cumulative_energy()
        values = [getattr(energy, c, None) for c in self.channels]
        lost = [c for c, v in zip(self.channels, values, strict=True) if v is None]
        if lost:
            raise CounterUnreadable(f"IOReport channel {', '.join(lost)} stopped reading during the measurement")
        return float(sum(values))


def counter_source(
    device: str, root: Path = POWERCAP, apple: Callable[[], CounterSource] | None = None
) -> tuple[CounterSource | None, str | None]:
    """The best counter this host offers for `device` (None: the CPU-time proxy is used), and why a source
    this host should have was not taken (None where nothing was refused). `apple` builds the macOS source
    (default: `AppleEnergySource` on macOS)."""
    candidates: list[Any] = []
    if apple is not None:
        candidates.append(apple)
    elif sys.platform == "darwin":
        candidates.append(AppleEnergySource)
    if device == "gpu":
        candidates.append(NvmlSource)
    refused = None
    for candidate in candidates:
        try:
            return candidate(), None
        except CounterUnreadable as exc:
            refused = str(exc)
        except Exception as exc:  # not installed, no permission, no device: try the next source
            log.debug("energy source %s unavailable: %s", getattr(candidate, "__name__", candidate), exc)
            continue
    return RaplSource.find(root), refused


@dataclass
class EnergyMeter:
    """Measures the idle baseline, then the sampling window, with one source plus the CPU-time proxy.
    `note` says why a counter this host should have is not used; a counter that stops reading mid-way
    leaves the proxy, with the note."""

    source: CounterSource | None
    note: str | None = None
    cpu: CpuTimeWindow = field(default_factory=CpuTimeWindow)
    idle_mw: float | None = None
    start_mj: float = 0.0
    start_s: float = 0.0

    @classmethod
    def for_device(cls, device: str) -> EnergyMeter:
        return cls(*counter_source(device))

    def _read(self) -> float | None:
        if self.source is None:
            return None
        try:
            return self.source.read_mj()
        except CounterUnreadable as exc:
            self.source, self.note = None, str(exc)
            return None

    def measure_idle(self, seconds: float = IDLE_WINDOW_S) -> None:
        before, started = self._read(), time.perf_counter()
        if before is None:
            return
        time.sleep(seconds)  # the idle window itself: nothing runs in it on purpose
        after = self._read()
        if after is not None:
            self.idle_mw = (after - before) / (time.perf_counter() - started) * 1000

    def begin(self) -> None:
        self.cpu.begin()
        start = self._read()
        if start is not None:
            self.start_mj, self.start_s = start, time.perf_counter()

    def end(self, inferences: int) -> EnergyStats:
        stats = self.cpu.end(inferences)
        now = self._read()
        stats.note = self.note
        if now is None or self.source is None:
            return stats
        stats.missing_channels = list(getattr(self.source, "missing", ()))
        window_mj = now - self.start_mj
        elapsed = time.perf_counter() - self.start_s
        idle_mj = (self.idle_mw or 0.0) * elapsed / 1000
        stats.source = self.source.name
        stats.mj_per_inference = max(window_mj - idle_mj, 0.0) / max(inferences, 1)
        stats.idle_subtracted = self.idle_mw is not None
        stats.idle_mw = self.idle_mw
        return stats
