"""`bench devices --check`: a tiny model loaded on every device of every backend, through the same load
path `bench run` takes, to show what really ran where and how long one inference took.

A device a runtime lists but does not use (a virtualised Mac without a Neural Engine or GPU, an execution
provider that took no node) shows up here, before any benchmark is trusted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import Backend, DeviceUnavailable, LoadRequest, Session
from profiles.paths import save_torch

DEVICES = ("cpu", "gpu", "ane")
WARMUP_CALLS = 5
TIMED_CALLS = 50
PROBE_MODEL_REF = "harness.backends.probe:probe_model"
PROBE_THREADS = 1  # a sanity figure, not a benchmark: one thread stays stable on a busy or small machine


@dataclass(frozen=True)
class Probe:
    """One backend on one device: where the probe model ran and its median inference time, or why not."""

    backend: str
    device: str
    placed: str | None = None
    ms: float | None = None
    reason: str | None = None
    error: bool = False  # an unexpected failure, as opposed to a device this host does not offer
    section: str | None = None  # the heading its line goes under, where not the backend's name

    @property
    def heading(self) -> str:
        return self.section or self.backend


def probe_model() -> tuple[Any, Any]:
    """The probe for torch and Core ML (a model factory, so `bench run`'s torch path loads it): a few
    convolutions, the ops the Neural Engine is built for, small enough to convert in seconds."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, 10),
        ).eval()
        return module, torch.rand(1, 3, 32, 32)


def onnx_probe_bytes() -> bytes:
    """The ONNX Runtime probe, written in ONNX directly (no export: it must take well under a second)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "bias")
    nodes = [
        helper.make_node("MatMul", ["x", "weight"], ["product"], name="matmul"),
        helper.make_node("Add", ["product", "bias"], ["sum"], name="add"),
        helper.make_node("Relu", ["sum"], ["y"], name="relu"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    graph = helper.make_graph(nodes, "probe", [x], [y], initializer=[weight, bias])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def median_ms(call: Callable[[], Any], sync: Callable[[], None]) -> float:
    for _ in range(WARMUP_CALLS):
        call()
    sync()
    times = []
    for _ in range(TIMED_CALLS):
        started = time.perf_counter_ns()
        call()
        sync()
        times.append((time.perf_counter_ns() - started) / 1e6)
    return float(np.median(times))


def onnxruntime_placed(session: Session, device: str) -> str:
    """'3 of 3 nodes on CPUExecutionProvider', from the session's graph assignment."""
    from harness.backends.onnxruntime import PROVIDERS

    wanted = PROVIDERS[device][0][0]
    by_provider = session.placement()["by_provider"]
    placed = f"{by_provider.get(wanted, 0)} of {sum(by_provider.values())} nodes on {wanted}"
    if wanted == "CoreMLExecutionProvider":
        return f"{placed} (requested {device}; Core ML decides where they run)"
    return placed


def coreml_placed(session: Session, device: str) -> str:
    """'14 of 14 ops prefer the Neural Engine', from the compute plan read at load."""
    from harness.backends.coreml import preference

    return preference(session.placement(), device)


def executorch_placed(session: Session, device: str) -> str:
    """'5 of 5 nodes in XnnpackBackend (cpu 5)', from the delegation info written at export; for a Core ML
    program with its compute plan, '9 of 9 nodes in CoreMLBackend (Core ML ops: ane 7, cpu 1)'."""
    from harness.backends.executorch import COREML_OPS

    placement = session.placement()
    (delegate, inside), *_ = placement["by_delegate"].items()
    total = sum(placement["by_delegate"].values())
    where = ", ".join(f"{d} {n}" for d, n in sorted(placement["by_device"].items()))
    if placement.get("by_device_counts") == COREML_OPS:
        where = f"Core ML ops: {where}"
    return f"{inside} of {total} nodes in {delegate} ({where})"


def torch_placed(session: Session, device: str) -> str:
    described = session.describe()
    return f"torch {described['torch']} on {described['device']}"


def probe_device(
    backend: Backend, request: LoadRequest, inputs: list[np.ndarray], placed: Callable[[Session, str], str]
) -> Probe:
    """Load, run and time the probe on one device the backend says this host has."""
    try:
        backend.prepare(request)
        session = backend.load(request)
        backend.admit(session, request)
        ms = median_ms(session.runner(inputs), session.sync)
        return Probe(backend.name, request.device, placed=placed(session, request.device), ms=ms)
    except DeviceUnavailable as exc:
        return Probe(backend.name, request.device, reason=str(exc))
    except Exception as exc:  # reported on its line (exit 1), so the other devices are still checked
        return Probe(backend.name, request.device, reason=f"{type(exc).__name__}: {exc}", error=True)
    finally:
        backend.close()


def _onnx_artifact(workdir: Path) -> str:
    path = workdir / "probe.onnx"
    path.write_bytes(onnx_probe_bytes())
    return str(path)


def _torch_artifact(workdir: Path) -> str:
    path = workdir / "probe.pt"
    save_torch(probe_model()[0].state_dict(), path)
    return str(path)


def _converted(workdir: Path, variant_name: str) -> str:
    """The probe model as `bench run` converts `variant_name`."""
    from converters.base import ConversionContext
    from converters.registry import CONVERTERS
    from profiles.catalog import VARIANTS
    from profiles.zoo import LoadedModel

    module, example = probe_model()
    variant = VARIANTS[variant_name]
    out = workdir / variant.format
    out.mkdir()
    with ConversionContext() as ctx:
        converted = CONVERTERS[variant.format]().convert(LoadedModel(module, (example,)), variant, out, ctx)
    return str(out / converted.main_file)


def _coreml_artifact(workdir: Path) -> str:
    """A float16-typed mlprogram, as coreml-fp16."""
    return _converted(workdir, "coreml-fp16")


def _executorch_artifact(workdir: Path) -> str:
    """An XNNPACK program, as et-xnnpack-fp32; on macOS the `gpu` and `ane` lines then say XNNPACK is CPU-only."""
    return _converted(workdir, "et-xnnpack-fp32")


def _executorch_coreml_artifact(workdir: Path) -> str:
    """A Core ML program, as et-coreml-fp16: its load path (staging, every partition's compute plan) is
    not XNNPACK's."""
    return _converted(workdir, "et-coreml-fp16")


def _coreml_delegate_reason() -> str | None:
    from harness.backends.executorch import REQUIRES_MACOS, coreml_host

    return None if coreml_host() else f"ExecuTorch's Core ML delegate {REQUIRES_MACOS}"


def _model_inputs() -> list[np.ndarray]:
    return [probe_model()[1].numpy()]


def _onnx_inputs() -> list[np.ndarray]:
    return [np.ones((1, 64), np.float32)]


def _any_host() -> str | None:
    return None


@dataclass(frozen=True)
class _ProbeKit:
    artifact: Callable[[Path], str]
    inputs: Callable[[], list[np.ndarray]]
    placed: Callable[[Session, str], str]
    section: str | None = None  # a heading of its own, for a second probe of one backend
    host_reason: Callable[[], str | None] = _any_host  # why this host cannot run the kit at all, or None


EXECUTORCH_COREML = "executorch (Core ML delegate)"
KITS = {
    "torch": (_ProbeKit(_torch_artifact, _model_inputs, torch_placed),),
    "onnxruntime": (_ProbeKit(_onnx_artifact, _onnx_inputs, onnxruntime_placed),),
    "coreml": (_ProbeKit(_coreml_artifact, _model_inputs, coreml_placed),),
    "executorch": (
        _ProbeKit(_executorch_artifact, _model_inputs, executorch_placed),
        _ProbeKit(
            _executorch_coreml_artifact, _model_inputs, executorch_placed, EXECUTORCH_COREML, _coreml_delegate_reason
        ),
    ),
}


def probe_all() -> Iterator[Probe]:
    """Each backend's probes on each device, in registry order; a probe's artifact is built only where one
    of its devices is available."""
    from harness.backends.registry import BACKENDS

    with tempfile.TemporaryDirectory(prefix="bench-probe-") as directory:
        for name, backend_class in BACKENDS.items():
            for index, kit in enumerate(KITS[name]):
                path: str | None = None
                for device in DEVICES:
                    backend = backend_class()
                    reason = kit.host_reason() or backend.available(device)
                    if reason is not None:
                        yield Probe(name, device, reason=reason, section=kit.section)
                        continue
                    if path is None:
                        workdir = Path(directory) / f"{name}-{index}"
                        workdir.mkdir()
                        path = kit.artifact(workdir)
                    request = LoadRequest(path, device, PROBE_THREADS, PROBE_MODEL_REF)
                    probe = probe_device(backend, request, kit.inputs(), kit.placed)
                    yield replace(probe, section=kit.section)
