"""Core ML through coremltools (macOS only): compute units per device, compile + load timed apart,
Core ML's own predict duration kept beside the wall clock, placement from MLComputePlan (macOS 14.4+).

Written against coremltools 9.0 (see the reference notes on the Apple platform). On any other OS,
`available()` says why and no case is measured.
"""

from __future__ import annotations

import importlib.util
import platform
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np

from converters.coreml_inputs import cast_to_spec, spec_input_dtypes
from harness.backends.base import Backend, LoadRequest, Session

COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "ane": "CPU_AND_NE", "all": "ALL"}
DEVICE_CLASSES = {"MLCPUComputeDevice": "cpu", "MLGPUComputeDevice": "gpu", "MLNeuralEngineComputeDevice": "ane"}
COMPUTE_PLAN_MACOS = (14, 4)


def macos_version() -> tuple[int, ...]:
    release = platform.mac_ver()[0]
    return tuple(int(part) for part in release.split(".") if part.isdigit()) if release else ()


def unavailable_reason(device: str, system: str, machine: str, has_coremltools: bool) -> str | None:
    """Why Core ML cannot run `device` on this host, or None. Pure, so every branch is testable anywhere."""
    if device not in COMPUTE_UNITS:
        return f"coreml has no '{device}' device (cpu, gpu, ane, all)"
    if system != "Darwin":
        return "ane needs macOS on Apple silicon" if device == "ane" else "Core ML runs only on macOS"
    if device == "ane" and machine != "arm64":
        return "ane needs macOS on Apple silicon"
    if not has_coremltools:
        return "coremltools is not installed (pip install 'ondevice-bench[coreml]')"
    return None


def summarise_plan(operations: Iterable[Any], usage_of: Callable[[Any], Any], cost_of: Callable[[Any], Any]) -> dict:
    """Ops and estimated cost share per preferred device, plus the op list, from an MLComputePlan walk.

    `usage_of(op)` returns an object with `preferred_compute_device` (an MLCPUComputeDevice,
    MLGPUComputeDevice or MLNeuralEngineComputeDevice) or None for ops that do not run (const);
    `cost_of(op)` returns an object with `weight` in [0, 1], or None (Intel Macs).
    """
    by_device: dict[str, int] = {}
    cost: dict[str, float] = {}
    ops = []
    for op in operations:
        usage = usage_of(op)
        if usage is None:
            continue
        device = DEVICE_CLASSES.get(type(usage.preferred_compute_device).__name__, "unknown")
        estimate = cost_of(op)
        weight = float(estimate.weight) if estimate is not None else None
        by_device[device] = by_device.get(device, 0) + 1
        if weight is not None:
            cost[device] = cost.get(device, 0.0) + weight
        ops.append({"op": op.operator_name, "device": device, "cost": weight})
    total = sum(cost.values())
    return {
        "source": "MLComputePlan",
        "by_device": by_device,
        "cost_share": {d: c / total for d, c in cost.items()} if total > 0 else {},
        "ops": ops,
    }


class CoreMLSession(Session):
    def __init__(self, model: Any, spec: Any, request: LoadRequest, compiled_path: str, compile_ms: float) -> None:
        import coremltools as ct

        self.model = model
        self.input_names = [i.name for i in spec.description.input]
        self.input_dtypes = spec_input_dtypes(spec)
        self.output_names = [o.name for o in spec.description.output]
        self.package_path = request.artifact_path
        self.compiled_path = compiled_path
        self.compile_ms = compile_ms
        self.units = getattr(ct.ComputeUnit, COMPUTE_UNITS[request.device])
        self.feed: dict[str, np.ndarray] | None = None

    def _feed(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return cast_to_spec(dict(zip(self.input_names, inputs, strict=True)), self.input_dtypes)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        out = self.model.predict(self._feed(inputs))
        return [np.asarray(out[name], dtype=np.float32) for name in self.output_names]

    def runner(self, inputs: list[np.ndarray]) -> Callable[[], Any]:
        self.feed = feed = self._feed(inputs)
        predict = self.model.predict
        return lambda: predict(feed)

    def describe(self) -> dict[str, Any]:
        import coremltools as ct

        return {
            "coremltools": ct.__version__,
            "compute_units": self.units.name,
            "macos": platform.mac_ver()[0],
            "compile_ms": self.compile_ms,
            "core_ml_predict_ms": self._core_ml_predict_ms() if self.feed is not None else None,
        }

    def _core_ml_predict_ms(self, calls: int = 20) -> float:
        """Median of Core ML's own predict timing, beside the wall clock (an MLModel exposes it through
        `last_predict_duration_in_nano_seconds`; a CompiledMLModel does not)."""
        import coremltools as ct

        model = ct.models.MLModel(self.package_path, compute_units=self.units)
        values = []
        for _ in range(calls):
            model.predict(self.feed)
            values.append(model.last_predict_duration_in_nano_seconds / 1e6)
        return float(np.median(values))

    def placement(self) -> dict[str, Any]:
        if macos_version() < COMPUTE_PLAN_MACOS:
            return {"source": "unavailable: MLComputePlan needs macOS >= 14.4"}
        from coremltools.models.compute_plan import MLComputePlan

        plan = MLComputePlan.load_from_path(self.compiled_path, compute_units=self.units)
        program = plan.model_structure.program
        if program is None:
            return {"source": "unavailable: not an ML program"}

        def walk(block: Any) -> Iterable[Any]:
            for op in block.operations:
                yield op
                for inner in op.blocks:
                    yield from walk(inner)

        return summarise_plan(
            walk(program.functions["main"].block),
            plan.get_compute_device_usage_for_mlprogram_operation,
            plan.get_estimated_cost_for_mlprogram_operation,
        )


class CoreMLBackend(Backend):
    name = "coreml"
    devices: ClassVar[tuple[str, ...]] = tuple(COMPUTE_UNITS)

    def __init__(self) -> None:
        self.compile_ms: float | None = None
        self.compiled_path = ""
        self.spec: Any = None

    def available(self, device: str) -> str | None:
        return unavailable_reason(
            device, platform.system(), platform.machine(), importlib.util.find_spec("coremltools") is not None
        )

    def prepare(self, request: LoadRequest) -> None:
        import coremltools as ct

        self.spec = ct.models.MLModel(request.artifact_path, skip_model_load=True).get_spec()

    def load(self, request: LoadRequest) -> Session:
        """The first call compiles the .mlpackage (also kept apart as `compile_ms`) and loads the compiled
        model: the cold load. A later call loads the same compiled model again: the warm load."""
        import coremltools as ct

        if self.compile_ms is None:
            started = time.perf_counter_ns()
            destination = tempfile.mkdtemp(prefix="bench-coreml-") + "/model.mlmodelc"
            self.compiled_path = ct.models.utils.compile_model(request.artifact_path, destination)
            self.compile_ms = (time.perf_counter_ns() - started) / 1e6
        units = getattr(ct.ComputeUnit, COMPUTE_UNITS[request.device])
        model = ct.models.CompiledMLModel(self.compiled_path, compute_units=units)
        return CoreMLSession(model, self.spec, request, self.compiled_path, self.compile_ms)
