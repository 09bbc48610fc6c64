"""The torch backend's template: what its worker imports before it loads (torch builds the module)."""

from harness.process.templates import preload

preload(("numpy", "torch"))
