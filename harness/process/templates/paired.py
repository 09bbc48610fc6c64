"""The paired processes' template: every runtime an arm may run on (a paired process reports latency
alone, and its arms span runtimes: the torch reference beside an ONNX or ExecuTorch variant)."""

from harness.process.templates import EXECUTORCH, preload

preload(("numpy", "torch", "onnxruntime", EXECUTORCH))
