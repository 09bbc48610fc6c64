"""The timed loop and the load every measuring process starts with: one copy, shared by the unpaired
worker, the generative one and the paired one (`harness.pairing.worker` times its blocks with `timed_calls`)."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.results.schema import GpuMemory, JsonValue, MemoryStats, ThermalState

if TYPE_CHECKING:
    from harness.backends.base import Backend
    from harness.measure.thermal import ThermalReading

MAX_CALLS_PER_SAMPLE = 1 << 16
MIN_SAMPLES = 5


def timed_calls(call: Callable[[], Any], sync: Callable[[], None], calls: int) -> float:
    """Milliseconds per call over `calls` calls in a row and one `sync` after them (the clock reads finished
    device work): the timed block every loop here and every paired block is made of."""
    started = time.perf_counter_ns()
    for _ in range(calls):
        call()
    sync()
    return (time.perf_counter_ns() - started) / 1e6 / calls


def calibrate(call: Callable[[], Any], sync: Callable[[], None], min_sample_ms: float) -> int:
    """Calls per sample: doubled until one sample lasts at least `min_sample_ms`."""
    calls = 1
    while calls < MAX_CALLS_PER_SAMPLE:
        if timed_calls(call, sync, calls) * calls >= min_sample_ms:
            break
        calls *= 2
    return calls


def sample(call: Callable[[], Any], sync: Callable[[], None], calls: int, budget_s: float) -> list[float]:
    """Milliseconds per call, one value per batch of `calls`, until the budget is spent."""
    values: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(values) < MIN_SAMPLES or time.perf_counter() < deadline:
        values.append(timed_calls(call, sync, calls))
    return values


def thermal_record(start: ThermalReading, end: ThermalReading) -> ThermalState:
    """The thermal level at the start and end of sampling, and where it was read."""
    return ThermalState(end.source, start.level, end.level)


@dataclass(frozen=True)
class ColdLoad:
    """The first load of a fresh process: its time and the memory readings around it."""

    cold_ms: float
    before_load: int
    after_load: int
    load_peak: int | None


def load_cold(backend: Backend, request: Any, memory: Any) -> tuple[Any, ColdLoad]:
    """The session of the process's first load, and that load's readings (timed, the memory peak reset
    just before it), then the backend's checks of the loaded model (`Backend.admit`, outside the timed
    load); raises `DeviceUnavailable` when the runtime declines the device."""
    gc.collect()
    before_load = memory.rss()
    memory.reset()
    started = time.perf_counter_ns()
    session = backend.load(request)
    cold_ms = (time.perf_counter_ns() - started) / 1e6
    cold = ColdLoad(cold_ms, before_load, memory.rss(), memory.peak())
    backend.admit(session, request)
    return session, cold


def warm_load_ms(backend: Backend, request: Any) -> float:
    """A second load's milliseconds, taken after the caller dropped every reference to its first session: the
    first's memory is collected, and what is warm is the runtime's own caches (compiled graphs, files)."""
    gc.collect()
    started = time.perf_counter_ns()
    warm = backend.load(request)
    elapsed = (time.perf_counter_ns() - started) / 1e6
    del warm
    return elapsed


def memory_figures(source: str, cold: ColdLoad, peak: int | None, gpu: GpuMemory | None) -> MemoryStats:
    """One process's memory readings as the results hold them."""
    return MemoryStats(
        source=source,
        before_load_bytes=cold.before_load,
        after_load_bytes=cold.after_load,
        load_delta_bytes=cold.after_load - cold.before_load,
        load_peak_bytes=cold.load_peak,
        peak_rss_bytes=peak,
        gpu=gpu,
    )


def reported(read: Callable[[], Mapping[str, JsonValue]]) -> dict[str, JsonValue]:
    """What a session reports after sampling, or the error in its place: a failing `describe()` or
    `placement()` (a runtime's own call, which may raise anything) never discards the measurement. The
    traceback goes to the case's log; the result says which call failed and how."""
    try:
        return dict(read())
    except Exception as exc:
        logging.getLogger(__name__).exception("%s failed; the measurement is kept without it", read.__name__)
        return {"error": f"{type(exc).__name__}: {exc}"}
