"""Switch time: what activating another adapter costs, for Core ML loading another function of one
multifunction package (`converters.coreml.multifunction`) in a process where one function is loaded and
has run. macOS 15 only (multifunction models are iOS18); elsewhere the reason, before any work."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass

import numpy as np

from converters.coreml.inputs import cast_to_spec
from harness.backends.base import DeviceUnavailable, LoadRequest
from harness.backends.coreml import CoreMLBackend, CoreMLSession

WARM_SWITCHES = 5


@dataclass(frozen=True)
class SwitchTime:
    """Milliseconds of activating function `second` of a package after `first`.

    `first_load_ms` is the process's first load, the package's compile included (kept apart as
    `compile_ms`, every function compiled at once), as the backend's cold load; `cold_ms` is the first load
    of `second` in the process; `warm_ms`, each load of it again after its earlier instance was released and
    `first` ran in between. Cold means first in this process, not first on this Mac: Core ML keeps device
    specialisations of compiled models across processes until the system purges them."""

    first: str
    second: str
    device: str
    compile_ms: float
    first_load_ms: float
    cold_ms: float
    cold_first_inference_ms: float  # `second`'s first predict after its cold load
    warm_ms: tuple[float, ...]

    @property
    def warm_median_ms(self) -> float:
        return statistics.median(self.warm_ms)


def predict_ms(session: CoreMLSession, inputs: list[np.ndarray]) -> float:
    """One predict on the function's inputs, in ms; a stateful function (a decoder's KV cache) gets a new
    state, as a new sequence would."""
    feed = cast_to_spec(dict(zip(session.input_names, inputs, strict=True)), session.input_dtypes)
    state = session.model.make_state() if session.state_bytes is not None else None
    started = time.perf_counter_ns()
    session.model.predict(feed, state)
    return (time.perf_counter_ns() - started) / 1e6


def _timed_load(backend: CoreMLBackend, request: LoadRequest, function: str) -> tuple[CoreMLSession, float]:
    gc.collect()  # a released function's memory goes before the clock starts, not during the load
    started = time.perf_counter_ns()
    session = backend.load(request, function)
    return session, (time.perf_counter_ns() - started) / 1e6


def measure_switch(
    request: LoadRequest, first: str, second: str, inputs: list[np.ndarray], repeats: int = WARM_SWITCHES
) -> SwitchTime:
    """Switch from function `first` to `second` of the package at `request.artifact_path` in this process:
    load and run `first`, load `second` (cold) and run it, release it; then `repeats` times run `first`,
    load `second` again (warm), run it and release it. `inputs` are the functions' inputs in their declared
    order (adapters of one base share them). Raises `DeviceUnavailable` where Core ML cannot run the device."""
    backend = CoreMLBackend()
    reason = backend.available(request.device)
    if reason is not None:
        raise DeviceUnavailable(reason)
    backend.prepare(request)
    try:
        active, first_load_ms = _timed_load(backend, request, first)
        predict_ms(active, inputs)
        switched, cold_ms = _timed_load(backend, request, second)
        cold_first_inference_ms = predict_ms(switched, inputs)
        del switched
        warm = []
        for _ in range(repeats):
            predict_ms(active, inputs)
            switched, elapsed = _timed_load(backend, request, second)
            warm.append(elapsed)
            predict_ms(switched, inputs)
            del switched
        assert backend.compiled is not None
        return SwitchTime(
            first,
            second,
            request.device,
            backend.compiled.compile_ms,
            first_load_ms,
            cold_ms,
            cold_first_inference_ms,
            tuple(warm),
        )
    finally:
        backend.close()
