"""PyTorch eager: the reference runtime, on the CPU, or CUDA/MPS for `gpu`."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backends.base import Backend, LoadRequest, ProbeKit, Session
from harness.backends.probe import probe_model, probe_model_inputs
from harness.results.schema import GpuMemory
from profiles.paths import save_torch


def _outputs_to_numpy(outputs: Any) -> list[np.ndarray]:
    import torch

    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return [o.detach().float().cpu().numpy() for o in outputs]


class TorchSession(Session):
    def __init__(self, module: Any, device: Any) -> None:
        self.module = module
        self.device = device

    def _tensors(self, inputs: list[np.ndarray]) -> list[Any]:
        import torch

        return [torch.from_numpy(np.ascontiguousarray(x)).to(self.device) for x in inputs]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            return _outputs_to_numpy(self.module(*self._tensors(inputs)))

    def runner(self, inputs: list[np.ndarray]) -> Callable[[], Any]:
        import torch

        tensors = self._tensors(inputs)
        module = self.module
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)  # peaks from here on are inference's

        def call() -> Any:
            with torch.inference_mode():
                return module(*tensors)

        return call

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def gpu_memory(self) -> GpuMemory | None:
        """CUDA: the caching allocator's peaks since load; MPS: memory the Metal driver holds for us."""
        import torch

        if self.device.type == "cuda":
            return GpuMemory(
                "torch.cuda allocator",
                peak_allocated_bytes=int(torch.cuda.max_memory_allocated(self.device)),
                peak_reserved_bytes=int(torch.cuda.max_memory_reserved(self.device)),
            )
        if self.device.type == "mps":
            return GpuMemory("torch.mps driver", driver_allocated_bytes=int(torch.mps.driver_allocated_memory()))
        return None

    def describe(self) -> dict[str, Any]:
        import torch

        return {"torch": torch.__version__, "device": str(self.device), "threads": torch.get_num_threads()}


def _probe_artifact(workdir: Path) -> str:
    path = workdir / "probe.pt"
    save_torch(probe_model()[0].state_dict(), path)
    return str(path)


def _probe_placed(session: Session, device: str) -> str:
    described = session.describe()
    return f"torch {described['torch']} on {described['device']}"


class TorchBackend(Backend):
    name = "torch"
    format = "torch"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "gpu")
    template: ClassVar[str | None] = "harness.process.templates.torch_eager"
    probe_kits = (ProbeKit(_probe_artifact, probe_model_inputs, _probe_placed),)
    baseline_refusal = "a torch state dict runs with the current code; pairing needs a self-contained artifact"

    def available(self, device: str) -> str | None:
        if device not in self.devices:
            return f"torch has no '{device}' device (it runs cpu and gpu)"
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        if device == "gpu":
            import torch

            if not (torch.cuda.is_available() or torch.backends.mps.is_available()):
                return "no CUDA or MPS device visible to torch"
        return None

    def __init__(self) -> None:
        self.skeleton: Any = None

    def prepare(self, request: LoadRequest) -> None:
        """Builds the module from its factory untimed; `load` then times what a deployment does:
        reading the weights file into the module and moving it to the device."""
        import torch

        from profiles.zoo import load_model, resolve_model

        if request.threads > 0:
            torch.set_num_threads(request.threads)
            if torch.get_num_interop_threads() != 1:  # settable once per process: a paired process may hold two
                torch.set_num_interop_threads(1)
        self.skeleton = load_model(resolve_model(request.model_ref)).module

    def load(self, request: LoadRequest) -> Session:
        import copy

        import torch

        if request.device == "gpu":
            device = torch.device("cuda" if torch.cuda.is_available() else "mps")
        else:
            device = torch.device("cpu")
        module = copy.deepcopy(self.skeleton)
        module.load_state_dict(torch.load(request.artifact_path, weights_only=True, map_location="cpu"))
        return TorchSession(module.to(device).eval(), device)
