"""ONNX Runtime's template: its worker imports neither torch nor ExecuTorch."""

from harness.process.templates import preload

preload(("numpy", "onnxruntime"))
