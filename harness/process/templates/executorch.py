"""ExecuTorch's template: its extension links against libtorch, which its worker loads first."""

from harness.process.templates import EXECUTORCH, preload

preload(("numpy", "torch", EXECUTORCH))
