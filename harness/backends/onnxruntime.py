"""ONNX Runtime with an explicit execution provider per device; a provider it did not take is refused."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from harness.backends.base import Backend, DeviceUnavailable, LoadRequest, Session

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


def summarise_profile(events: list[dict[str, Any]], coreml_device: str) -> dict[str, Any]:
    """Node-to-provider placement from ONNX Runtime's profiling trace (`cat == "Node"` events carry
    `args.provider` and `args.op_name`), counted once per node."""
    providers: dict[str, str] = {}
    for event in events:
        args = event.get("args", {})
        if event.get("cat") == "Node" and "provider" in args:
            providers[event["name"].removesuffix("_kernel_time")] = args["provider"]
    by_provider: dict[str, int] = {}
    by_device: dict[str, int] = {}
    for provider in providers.values():
        by_provider[provider] = by_provider.get(provider, 0) + 1
        device = coreml_device if provider == "CoreMLExecutionProvider" else PROVIDER_DEVICE.get(provider, provider)
        by_device[device] = by_device.get(device, 0) + 1
    return {"source": "onnxruntime profiling", "by_device": by_device, "by_provider": by_provider}


class OrtSession(Session):
    def __init__(self, session: Any, request: LoadRequest, options: Any, providers: list[Any]) -> None:
        self.session = session
        self.request = request
        self.options = options
        self.providers = providers
        self.input_names = [i.name for i in session.get_inputs()]
        self.feed: dict[str, np.ndarray] = {}

    def _feed(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(x) for name, x in zip(self.input_names, inputs, strict=True)}

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in self.session.run(None, self._feed(inputs))]

    def runner(self, inputs: list[np.ndarray]) -> Callable[[], Any]:
        self.feed = feed = self._feed(inputs)
        run = self.session.run
        return lambda: run(None, feed)

    def gpu_memory(self) -> dict[str, Any] | None:
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
            return {"source": f"unavailable: {type(exc).__name__}: {exc}"}
        return {"source": "nvml (process)", "used_bytes": int(used[0]) if used and used[0] else None}

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "providers": self.session.get_providers()}

    def placement(self) -> dict[str, Any]:
        """From a separate profiled session run once on the timed inputs, so profiling never touches the
        timed session."""
        import json
        import os
        import tempfile

        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.options.intra_op_num_threads
        options.enable_profiling = True
        with tempfile.TemporaryDirectory(prefix="bench-ort-profile-") as directory:
            options.profile_file_prefix = os.path.join(directory, "profile")
            session = ort.InferenceSession(self.request.artifact_path, options, providers=self.providers)
            session.run(None, self.feed)
            with open(session.end_profiling()) as handle:
                events = json.load(handle)
        return summarise_profile(events, self.request.device)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "gpu", "ane")

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
        return OrtSession(session, request, options, providers)
