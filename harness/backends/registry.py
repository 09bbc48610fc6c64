"""Every backend, by name. Adding one: a new module and one line here."""

from __future__ import annotations

from harness.backends.base import Backend
from harness.backends.coreml import CoreMLBackend
from harness.backends.executorch import ExecuTorchBackend
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.backends.torch_eager import TorchBackend

BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls for cls in (TorchBackend, OnnxRuntimeBackend, CoreMLBackend, ExecuTorchBackend)
}

# What the measuring children's template imports before it forks them (`harness.process.isolation`):
# one module, which imports the runtimes and the backends.
TEMPLATE_PRELOAD = ("harness.backends.preload",)
