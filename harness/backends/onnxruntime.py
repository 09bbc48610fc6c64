"""ONNX Runtime with an explicit execution provider per device; a provider that took no node is refused."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backends.base import Backend, DeviceUnavailable, LoadRequest, ProbeKit, Session
from harness.results.schema import GpuMemory

PROVIDERS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "cpu": [("CPUExecutionProvider", {})],
    "gpu": (
        [("CoreMLExecutionProvider", {"ModelFormat": "MLProgram", "MLComputeUnits": "CPUAndGPU"})]
        if sys.platform == "darwin"
        else [("CUDAExecutionProvider", {})]
    ),
    "ane": [("CoreMLExecutionProvider", {"ModelFormat": "MLProgram", "MLComputeUnits": "CPUAndNeuralEngine"})],
}


PROVIDER_DEVICE = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "gpu"}
RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"


def count_assignment(subgraphs: Iterable[Any]) -> dict[str, int]:
    """ONNX nodes per provider from `get_provider_graph_assignment_info()` (onnxruntime 1.24+), in the graph
    as ONNX Runtime runs it (after its basic optimizations, e.g. MatMul+Add fused into Gemm). A compiling
    provider (CoreML) lists the member nodes of each fused partition, so each counts, not the partition."""
    counts: dict[str, int] = {}
    for subgraph in subgraphs:
        counts[subgraph.ep_name] = counts.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
    return counts


def provider_label(provider: str, device: str) -> str:
    """The device a provider's share is reported under. ONNX Runtime cannot tell where Core ML ran a fused
    partition (it may be the CPU), so the CoreML share names the request, never the device itself."""
    if provider == "CoreMLExecutionProvider":
        return f"coreml (requested {device})"
    return PROVIDER_DEVICE.get(provider, provider)


def summarise_assignment(counts: dict[str, int], device: str) -> dict[str, Any]:
    by_device: dict[str, int] = {}
    for provider, nodes in counts.items():
        label = provider_label(provider, device)
        by_device[label] = by_device.get(label, 0) + nodes
    return {"source": "onnxruntime graph assignment", "by_device": by_device, "by_provider": dict(counts)}


def assignment_refusal(counts: dict[str, int], wanted: str) -> str | None:
    """Why a case must not be measured under the requested provider's device, or None: the provider stays in
    `get_providers()` even when it took no node, and ONNX Runtime then runs everything on the CPU."""
    if counts.get(wanted, 0) > 0:
        return None
    taken = ", ".join(f"{provider} {nodes}" for provider, nodes in sorted(counts.items())) or "none"
    return f"{wanted} took 0 of {sum(counts.values())} nodes ({taken})"


class OrtSession(Session):
    def __init__(self, session: Any, assignment: dict[str, Any]) -> None:
        self.session = session
        self.assignment = assignment
        self.input_names = [i.name for i in session.get_inputs()]

    def _feed(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(x) for name, x in zip(self.input_names, inputs, strict=True)}

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in self.session.run(None, self._feed(inputs))]

    def runner(self, inputs: list[np.ndarray]) -> Callable[[], Any]:
        feed = self._feed(inputs)
        run = self.session.run
        return lambda: run(None, feed)

    def gpu_memory(self) -> GpuMemory | None:
        """This process's memory on the GPU by NVML, where the CUDA provider ran the case."""
        if "CUDAExecutionProvider" not in self.session.get_providers():
            return None
        try:
            import os

            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            used = [p.usedGpuMemory for p in processes if p.pid == os.getpid()]
        except Exception as exc:  # no NVML library or no permission: say so rather than guess
            return GpuMemory(f"unavailable: {type(exc).__name__}: {exc}")
        return GpuMemory("nvml (process)", used_bytes=int(used[0]) if used and used[0] else None)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "providers": self.session.get_providers()}

    def placement(self) -> dict[str, Any]:
        return self.assignment


def onnx_probe_bytes() -> bytes:
    """The probe of `bench devices --check`, written in ONNX directly (no export: it must take well under a
    second)."""
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


def _probe_artifact(workdir: Path) -> str:
    path = workdir / "probe.onnx"
    path.write_bytes(onnx_probe_bytes())
    return str(path)


def _probe_inputs() -> list[np.ndarray]:
    return [np.ones((1, 64), np.float32)]


def onnxruntime_placed(session: Session, device: str) -> str:
    """'3 of 3 nodes on CPUExecutionProvider', from the session's graph assignment."""
    wanted = PROVIDERS[device][0][0]
    by_provider = session.placement()["by_provider"]
    placed = f"{by_provider.get(wanted, 0)} of {sum(by_provider.values())} nodes on {wanted}"
    if wanted == "CoreMLExecutionProvider":
        return f"{placed} (requested {device}; Core ML decides where they run)"
    return placed


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    format = "onnx"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "gpu", "ane")
    template: ClassVar[str | None] = "harness.process.templates.onnxruntime"
    suffixes = (".onnx",)
    probe_kits = (ProbeKit(_probe_artifact, _probe_inputs, onnxruntime_placed),)

    def available(self, device: str) -> str | None:
        if device not in PROVIDERS:
            return f"onnxruntime has no '{device}' mapping (cpu, gpu, ane)"
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        import onnxruntime as ort

        wanted = PROVIDERS[device][0][0]
        if wanted not in ort.get_available_providers():
            return f"{wanted} not available in this onnxruntime build"
        return None

    def prepare(self, request: LoadRequest) -> None:
        import onnxruntime  # noqa: F401

    def load(self, request: LoadRequest) -> Session:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry(RECORD_ASSIGNMENT, "1")
        if request.threads > 0:
            options.intra_op_num_threads = request.threads
            options.inter_op_num_threads = 1
        providers = PROVIDERS[request.device]
        wanted = providers[0][0]
        if wanted != "CPUExecutionProvider":  # CPU takes the nodes the accelerator cannot
            providers = [*providers, ("CPUExecutionProvider", {})]
        session = ort.InferenceSession(request.artifact_path, options, providers=providers)
        if wanted not in session.get_providers():
            raise DeviceUnavailable(f"{wanted} not available (the session took {session.get_providers()})")
        counts = count_assignment(session.get_provider_graph_assignment_info())
        refusal = assignment_refusal(counts, wanted)
        if refusal is not None:
            raise DeviceUnavailable(refusal)
        return OrtSession(session, summarise_assignment(counts, request.device))
