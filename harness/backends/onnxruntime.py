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


class OrtSession(Session):
    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]

    def _feed(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(x) for name, x in zip(self.input_names, inputs, strict=True)}

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in self.session.run(None, self._feed(inputs))]

    def runner(self, inputs: list[np.ndarray]) -> Callable[[], Any]:
        feed = self._feed(inputs)
        run = self.session.run
        return lambda: run(None, feed)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "providers": self.session.get_providers()}


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
        session = ort.InferenceSession(request.artifact_path, options, providers=[*providers, "CPUExecutionProvider"])
        wanted = providers[0][0]
        if wanted not in session.get_providers():
            raise DeviceUnavailable(f"{wanted} not available (the session took {session.get_providers()})")
        return OrtSession(session)
