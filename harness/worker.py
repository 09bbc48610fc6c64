"""One measurement process of one case: load (cold), first inference, parity, warmup, samples, memory,
CPU time, thermal state, what the runtime says it used and where, then a warm load. Runs in a fresh
spawned process and sends one `Measured` message (or `Unavailable` when the runtime declines the device)."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harness.backends.base import Backend

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
MAX_CALLS_PER_SAMPLE = 1 << 16
MIN_SAMPLES = 5


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
    gate: dict[str, Any]
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


def calibrate(call: Callable[[], Any], sync: Callable[[], None], min_sample_ms: float) -> int:
    """Calls per sample: doubled until one sample lasts at least `min_sample_ms`."""
    calls = 1
    while calls < MAX_CALLS_PER_SAMPLE:
        started = time.perf_counter_ns()
        for _ in range(calls):
            call()
        sync()
        if (time.perf_counter_ns() - started) / 1e6 >= min_sample_ms:
            break
        calls *= 2
    return calls


def sample(call: Callable[[], Any], sync: Callable[[], None], calls: int, budget_s: float) -> list[float]:
    """Milliseconds per call, one value per batch of `calls`, until the budget is spent."""
    values: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(values) < MIN_SAMPLES or time.perf_counter() < deadline:
        started = time.perf_counter_ns()
        for _ in range(calls):
            call()
        sync()
        values.append((time.perf_counter_ns() - started) / 1e6 / calls)
    return values


def _parity(session: Any, spec: WorkerSpec) -> dict[str, Any] | None:
    from harness.parity import evaluate

    if spec.parity_path is None:
        return None
    inputs = npz_arrays(spec.parity_path, "input_")
    references = npz_arrays(spec.parity_path, "ref_")
    with np.load(spec.parity_path) as data:
        labels = data["labels"] if "labels" in data.files else None
    rows = [session.run([x[i : i + 1] for x in inputs]) for i in range(len(inputs[0]))]
    actuals = [np.concatenate([row[j] for row in rows]) for j in range(len(references))]
    result = evaluate(references, actuals, labels, spec.task, spec.gate, spec.parity_source)
    return asdict(result)


def measure(spec: WorkerSpec, do_parity: bool, send: Callable[[Any], None]) -> None:
    if spec.threads > 0:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(spec.threads)
    from harness.backends.registry import BACKENDS

    backend = BACKENDS[spec.backend]()
    try:
        if spec.task == "generation":
            from harness.generation import measure_generation

            measure_generation(backend, spec, do_parity, send)
            return
        _measure_with(backend, spec, do_parity, send)
    finally:
        backend.close()


def thermal_record(start: Any, end: Any) -> dict[str, Any]:
    """The thermal level at the start and end of sampling, and where it was read."""
    return {"source": end.source, "start": start.level, "end": end.level}


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


def memory_figures(source: str, cold: ColdLoad, peak: int | None, gpu: Any) -> dict[str, Any]:
    """The keys of `harness.schema.MemoryStats` from one process's readings."""
    return {
        "source": source,
        "before_load_bytes": cold.before_load,
        "after_load_bytes": cold.after_load,
        "load_delta_bytes": cold.after_load - cold.before_load,
        "load_peak_bytes": cold.load_peak,
        "peak_rss_bytes": peak,
        "gpu": gpu,
    }


def reported(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What a session reports after sampling, or the error in its place: a failing `describe()` or
    `placement()` never discards the measurement."""
    try:
        return read()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _measure_with(backend: Backend, spec: WorkerSpec, do_parity: bool, send: Callable[[Any], None]) -> None:
    from harness.backends.base import DeviceUnavailable, LoadRequest
    from harness.energy import EnergyMeter
    from harness.memory import PeakTracker
    from harness.messages import Measured, Unavailable
    from harness.slowdown import requested_slowdown, slowed
    from harness.thermal import read_thermal, thermal_warning

    request = LoadRequest(spec.artifact_path, spec.device, spec.threads, spec.model_ref)
    backend.prepare(request)
    inputs = npz_arrays(spec.inputs_path, "arr_")
    memory = PeakTracker()
    try:
        session, cold = load_cold(backend, request, memory)
    except DeviceUnavailable as exc:
        send(Unavailable(str(exc)))
        return

    call = slowed(session.runner(inputs), requested_slowdown())
    memory.reset()
    started = time.perf_counter_ns()
    call()
    session.sync()
    first_ms = (time.perf_counter_ns() - started) / 1e6

    parity = _parity(session, spec) if do_parity else None
    for _ in range(spec.warmup):
        call()
    session.sync()
    calls = spec.calls_per_sample or calibrate(call, session.sync, spec.min_sample_ms)
    energy = EnergyMeter.for_device(spec.device)
    energy.measure_idle()
    thermal_start = read_thermal()
    energy.begin()
    samples = sample(call, session.sync, calls, spec.budget_s)
    energy_stats = energy.end(len(samples) * calls)
    thermal_end = read_thermal()
    peak = memory.peak()
    gpu_memory = session.gpu_memory()
    describe = reported(session.describe)
    placement = reported(session.placement)

    del session, call
    gc.collect()
    started = time.perf_counter_ns()
    warm = backend.load(request)
    warm_ms = (time.perf_counter_ns() - started) / 1e6
    del warm

    send(
        Measured(
            cold_ms=cold.cold_ms,
            warm_ms=warm_ms,
            first_inference_ms=first_ms,
            calls_per_sample=calls,
            samples_ms=samples,
            memory=memory_figures(memory.source, cold, peak, gpu_memory),
            energy=asdict(energy_stats),
            parity=parity,
            runtime=describe,
            thermal=thermal_warning(thermal_start, thermal_end),
            thermal_state=thermal_record(thermal_start, thermal_end),
            placement=placement,
        )
    )
