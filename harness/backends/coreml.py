"""Core ML through coremltools (macOS only): compute units per device, compile + load timed apart,
placement from MLComputePlan read at load, Core ML's own predict duration beside the wall clock.

Compute units are a request, not a placement: a float32-typed model never runs on the Neural Engine,
and a virtualised Mac may expose no Neural Engine or GPU. So a `gpu` or `ane` case whose compute plan
has no op preferring that device is refused at load, never measured under its name.

A multifunction package is compiled once and loaded a function at a time (switching: `harness.measure.switch`).

Written against coremltools 9.0 (see the reference notes on the Apple platform). On any other OS,
`available()` says why and no case is measured.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from converters.coreml.decoder import state_bytes
from converters.coreml.inputs import cast_to_spec, spec_input_dtypes
from converters.coreml.multifunction import core_ml_function_name, function_spec
from harness.backends.base import Backend, DeviceUnavailable, LoadRequest, ProbeKit, Session
from harness.backends.probe import converted_probe, probe_model_inputs
from harness.host import ROSETTA, mac_host, macos_version, proc_translated
from profiles.errors import first_line

logger = logging.getLogger(__name__)

COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "ane": "CPU_AND_NE", "all": "ALL"}
DEVICE_CLASSES = {"MLCPUComputeDevice": "cpu", "MLGPUComputeDevice": "gpu", "MLNeuralEngineComputeDevice": "ane"}
DEVICE_NAMES = {"cpu": "the CPU", "gpu": "the GPU", "ane": "the Neural Engine"}
COMPUTE_PLAN_MACOS = (14, 4)
COMPUTE_DEVICES_MACOS = (14,)
CPU_AND_NE_MACOS = (13,)
# Core ML specification version -> (deployment target, the first macOS that loads it).
SPEC_TARGETS = {
    6: ("iOS15", (12,)),
    7: ("iOS16", (13,)),
    8: ("iOS17", (14,)),
    9: ("iOS18", (15,)),
    10: ("iOS26", (26,)),
}
PREDICT_WARMUP = 5
PREDICT_CALLS = 20


def _release(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version)) or "unknown"


def unavailable_reason(
    device: str, system: str, machine: str, has_coremltools: bool, translated: int | None = None
) -> str | None:
    """Why Core ML cannot run `device` on this host, or None. Pure, so every branch is testable anywhere;
    `translated` is the `sysctl.proc_translated` value (`harness.host.mac_host`)."""
    if device not in COMPUTE_UNITS:
        return f"coreml has no '{device}' device (cpu, gpu, ane, all)"
    if system != "Darwin":
        return "ane needs macOS on Apple silicon" if device == "ane" else "Core ML runs only on macOS"
    if device == "ane" and mac_host(machine, translated) == "rosetta":
        return ROSETTA
    if device == "ane" and machine != "arm64":
        return "ane needs macOS on Apple silicon"
    if not has_coremltools:
        return "coremltools is not installed (pip install 'ondevice-bench[coreml]')"
    return None


def macos_reason(macos: tuple[int, ...], device: str, spec_version: int) -> str | None:
    """Why this macOS cannot load a model of this Core ML spec version on `device`, or None."""
    if device == "ane" and macos < CPU_AND_NE_MACOS:
        return f"CPU_AND_NE needs macOS 13 or later; this is macOS {_release(macos)}"
    if spec_version in SPEC_TARGETS:
        target, needed = SPEC_TARGETS[spec_version]
        if macos < needed:
            return f"the model targets {target}, which needs macOS {_release(needed)}+; this is macOS {_release(macos)}"
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


def plan_unavailable(macos: tuple[int, ...]) -> str:
    """The plan's `source` where this macOS has no MLComputePlan."""
    return f"unavailable: MLComputePlan needs macOS {_release(COMPUTE_PLAN_MACOS)}; this is macOS {_release(macos)}"


def preference(plan: dict[str, Any], device: str) -> str:
    """'14 of 14 ops prefer the Neural Engine', from a summarised plan; where no plan was read, that and why
    (never '0 of 0 ops')."""
    if "by_device" not in plan:
        return f"placement unknown ({plan.get('source', 'no compute plan')})"
    by_device = plan["by_device"]
    return f"{by_device.get(device, 0)} of {sum(by_device.values())} ops prefer {DEVICE_NAMES[device]}"


def plan_refusal(plan: dict[str, Any], device: str, visible: Collection[str] | None) -> str | None:
    """Why a case on `device` must not be measured under that name, or None.

    `cpu` and `all` need no op anywhere in particular. For `gpu` and `ane` at least one op must prefer the
    device; a plan that could not be read is a refusal too (nothing shows the device was used). `visible`
    is the set of devices Core ML lists on this host (None where it cannot say), to tell a missing
    device from a model that avoids it.
    """
    if device not in ("gpu", "ane"):
        return None
    if "by_device" not in plan:
        return f"{device} placement cannot be checked ({plan.get('source', 'no compute plan')})"
    if plan["by_device"].get(device, 0) > 0:
        return None
    prefer = ", ".join(f"{d} {n}" for d, n in sorted(plan["by_device"].items())) or "none"
    reason = f"{preference(plan, device)} (preferred: {prefer})"
    if visible is not None and device not in visible:
        return f"{reason}: no {DEVICE_NAMES[device].removeprefix('the ')} visible to Core ML (virtualised runner?)"
    if device == "ane":
        return f"{reason}: Core ML keeps this model off the Neural Engine (a float32-typed model never runs there)"
    return reason


def read_compute_plan(compiled_path: str, units: Any, function: str = "main") -> dict[str, Any]:
    """The summarised MLComputePlan of one function of a compiled model for these compute units (macOS 14.4+)."""
    if macos_version() < COMPUTE_PLAN_MACOS:
        return {"source": plan_unavailable(macos_version())}
    from coremltools.models.compute_plan import MLComputePlan

    plan = MLComputePlan.load_from_path(compiled_path, compute_units=units)
    program = plan.model_structure.program
    if program is None:
        return {"source": "unavailable: not an ML program"}

    def walk(block: Any) -> Iterable[Any]:
        for op in block.operations:
            yield op
            for inner in op.blocks:
                yield from walk(inner)

    return summarise_plan(
        walk(program.functions[function].block),
        plan.get_compute_device_usage_for_mlprogram_operation,
        plan.get_estimated_cost_for_mlprogram_operation,
    )


def visible_devices() -> set[str] | None:
    """The devices Core ML lists on this host (macOS 14+), or None where it cannot say."""
    if macos_version() < COMPUTE_DEVICES_MACOS:
        return None
    import coremltools as ct

    try:
        found = ct.models.MLModel.get_available_compute_devices()
    except Exception as exc:  # an old runtime without the call: say nothing rather than guess
        logger.info("Core ML did not list its compute devices: %s", first_line(exc))
        return None
    return {DEVICE_CLASSES.get(type(d).__name__, "unknown") for d in found}


@dataclass(frozen=True)
class Compiled:
    """A compiled model in this backend's temp directory."""

    path: str
    compile_ms: float


@dataclass(frozen=True)
class PlanRead:
    """The compute plan summarised once per process, and how long reading it took (kept out of the load)."""

    plan: dict[str, Any]
    plan_ms: float


class CoreMLSession(Session):
    def __init__(self, model: Any, spec: Any, request: LoadRequest, compiled: Compiled, function: str | None) -> None:
        import coremltools as ct

        self.model = model
        self.function = function  # the multifunction package's function loaded, `spec` its view; None: one function
        self.plan: PlanRead | None = None  # set by `CoreMLBackend.admit`
        self.input_names = [i.name for i in spec.description.input]
        self.input_dtypes = spec_input_dtypes(spec)
        self.output_names = [o.name for o in spec.description.output]
        self.state_bytes = state_bytes(spec)  # a stateful decoder's KV cache, allocated at make_state()
        self.package_path = request.artifact_path
        self.compiled = compiled
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
            "compile_ms": self.compiled.compile_ms,
            "compute_plan_ms": self.plan.plan_ms if self.plan is not None else None,
            "core_ml_predict_ms_separate_instance": self._core_ml_predict_ms() if self.feed is not None else None,
        }

    def _core_ml_predict_ms(self) -> float:
        """Median of Core ML's own predict timing, read from a second, warmed-up MLModel of the same package
        (only an MLModel exposes `last_predict_duration_in_nano_seconds`; the timed CompiledMLModel does not)."""
        import coremltools as ct

        model = ct.models.MLModel(self.package_path, compute_units=self.units, function_name=self.function)
        for _ in range(PREDICT_WARMUP):
            model.predict(self.feed)
        values = []
        for _ in range(PREDICT_CALLS):
            model.predict(self.feed)
            values.append(model.last_predict_duration_in_nano_seconds / 1e6)
        return float(np.median(values))

    def placement(self) -> dict[str, Any]:
        return self.plan.plan if self.plan is not None else {}


def _probe_artifact(workdir: Path) -> str:
    """A float16-typed mlprogram, as coreml-fp16."""
    return converted_probe(workdir, "coreml-fp16")


def _probe_placed(session: Session, device: str) -> str:
    """'14 of 14 ops prefer the Neural Engine', from the compute plan read at load."""
    return preference(session.placement(), device)


class CoreMLBackend(Backend):
    name = "coreml"
    format = "coreml"
    devices: ClassVar[tuple[str, ...]] = tuple(COMPUTE_UNITS)
    suffixes = (".mlpackage", ".mlmodel")
    directory_suffixes = (".mlpackage",)
    probe_kits = (ProbeKit(_probe_artifact, probe_model_inputs, _probe_placed),)

    def __init__(self) -> None:
        self.spec: Any = None
        self.compiled: Compiled | None = None
        self.plans: dict[str | None, PlanRead] = {}  # by function
        self.workdir: tempfile.TemporaryDirectory[str] | None = None

    def available(self, device: str) -> str | None:
        return unavailable_reason(
            device,
            platform.system(),
            platform.machine(),
            importlib.util.find_spec("coremltools") is not None,
            proc_translated(),
        )

    def prepare(self, request: LoadRequest) -> None:
        import coremltools as ct

        self.spec = ct.models.MLModel(request.artifact_path, skip_model_load=True).get_spec()

    def load(self, request: LoadRequest, function: str | None = None) -> CoreMLSession:
        """The first call compiles the .mlpackage (also kept apart as `compile_ms`) and loads the compiled
        model: the cold load, what an app pays. A later call loads the same compiled model again: the warm
        load. The compute plan is a second load no app pays: `admit` reads it, untimed. A multifunction
        package compiles once, all its functions, and each load loads `function` alone (None: the default),
        `MLModel(path, function_name=...)` in its compiled form."""
        import coremltools as ct

        view = function_spec(self.spec, function)  # an unknown name is refused before any Core ML call
        name = core_ml_function_name(self.spec, function)
        reason = macos_reason(macos_version(), request.device, self.spec.specificationVersion)
        if reason is not None:
            raise DeviceUnavailable(reason)
        units = getattr(ct.ComputeUnit, COMPUTE_UNITS[request.device])
        if self.compiled is None:
            self.compiled = self._compile(request.artifact_path)
        model = ct.models.CompiledMLModel(self.compiled.path, compute_units=units, function_name=name)
        return CoreMLSession(model, view, request, self.compiled, name)

    def admit(self, session: Session, request: LoadRequest) -> None:
        """Reads each function's compute plan once (timed apart as `compute_plan_ms`) and refuses a device no
        op prefers."""
        assert isinstance(session, CoreMLSession) and self.compiled is not None
        if session.function not in self.plans:
            started = time.perf_counter_ns()
            plan = read_compute_plan(self.compiled.path, session.units, session.function or "main")
            self.plans[session.function] = PlanRead(plan, (time.perf_counter_ns() - started) / 1e6)
        session.plan = self.plans[session.function]
        refusal = plan_refusal(session.plan.plan, request.device, visible_devices())
        if refusal is not None:
            raise DeviceUnavailable(refusal)

    def _compile(self, package_path: str) -> Compiled:
        import coremltools as ct

        self.workdir = tempfile.TemporaryDirectory(prefix="bench-coreml-")
        started = time.perf_counter_ns()
        path = ct.models.utils.compile_model(package_path, os.path.join(self.workdir.name, "model.mlmodelc"))
        return Compiled(path, (time.perf_counter_ns() - started) / 1e6)

    def close(self) -> None:
        if self.workdir is not None:
            self.workdir.cleanup()
        self.workdir = None
        self.compiled = None
        self.plans = {}
