"""One measurement process of one case: load (cold), first inference, parity, warmup, samples, memory,
CPU time, thermal state, what the runtime says it used and where, then a warm load. Runs in a fresh
spawned process and sends one `Measured` message (or `Unavailable` when the runtime declines the device)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.measure.loop import (
    calibrate,
    load_cold,
    memory_figures,
    reported,
    sample,
    thermal_record,
    warm_load_ms,
)
from harness.process.specs import WorkerSpec, npz_arrays

if TYPE_CHECKING:
    from harness.backends.base import Backend, Session
    from harness.results.schema import ParityResult


def _parity(session: Session, spec: WorkerSpec) -> ParityResult | None:
    from harness.accuracy.parity import evaluate

    if spec.parity_path is None:
        return None
    inputs = npz_arrays(spec.parity_path, "input_")
    references = npz_arrays(spec.parity_path, "ref_")
    with np.load(spec.parity_path) as data:
        labels = data["labels"] if "labels" in data.files else None
    rows = [session.run([x[i : i + 1] for x in inputs]) for i in range(len(inputs[0]))]
    actuals = [np.concatenate([row[j] for row in rows]) for j in range(len(references))]
    return evaluate(references, actuals, labels, spec.task, spec.gate, spec.parity_source)


def measure_unpaired(backend: Backend, spec: WorkerSpec, do_parity: bool, send: Callable[[Any], None]) -> None:
    from harness.backends.base import DeviceUnavailable, LoadRequest
    from harness.measure.energy import EnergyMeter
    from harness.measure.memory import PeakTracker
    from harness.measure.thermal import read_thermal, thermal_warning
    from harness.process.messages import Measured, Unavailable

    request = LoadRequest(spec.artifact_path, spec.device, spec.threads, spec.model_ref)
    backend.prepare(request)
    inputs = npz_arrays(spec.inputs_path, "arr_")
    memory = PeakTracker()
    load_at = time.time()
    try:
        session, cold = load_cold(backend, request, memory)
    except DeviceUnavailable as exc:
        send(Unavailable(str(exc)))
        return

    call = session.runner(inputs)
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
    sampling_started = time.perf_counter()
    samples = sample(call, session.sync, calls, spec.budget_s)
    sampling_s = time.perf_counter() - sampling_started
    energy_stats = energy.end(len(samples) * calls)
    thermal_end = read_thermal()
    peak = memory.peak()
    gpu_memory = session.gpu_memory()
    describe = reported(session.describe)
    placement = reported(session.placement)

    del session, call
    warm_ms = warm_load_ms(backend, request)

    send(
        Measured(
            cold_ms=cold.cold_ms,
            warm_ms=warm_ms,
            first_inference_ms=first_ms,
            calls_per_sample=calls,
            samples_ms=samples,
            memory=memory_figures(memory.source, cold, peak, gpu_memory),
            energy=energy_stats,
            parity=parity,
            runtime=describe,
            thermal=thermal_warning(thermal_start, thermal_end),
            thermal_state=thermal_record(thermal_start, thermal_end),
            placement=placement,
            load_at=load_at,
            sampling_s=sampling_s,
        )
    )
