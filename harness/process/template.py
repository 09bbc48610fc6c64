"""What the template imports before it forks paired processes (`harness.process.isolation`): the
runtimes a paired process would otherwise import afresh each time (torch for the reference arm,
ExecuTorch's extension, seconds each), and the backends themselves.

Only paired processes fork from it: they report latency alone. A forked child's resident memory counts
the template's pages it touches, not the ones a process of its own would have read in, so its memory
figures would rest on another basis; the unpaired processes, which report memory, load times and
first inference, start afresh as before.

Imported for its effect, once, in the template. Nothing here starts a thread pool or touches a device:
each runtime's pool is made in the child, at the thread count the case asks for. Core ML is never
imported here (the template is not used on macOS, and on Linux coremltools has no runtime to preload).
"""

from __future__ import annotations

import importlib
import logging

from converters.executorch import quiet_stderr

RUNTIMES = ("numpy", "torch", "onnxruntime", "executorch.extension.pybindings._C")


def _import_runtimes() -> None:
    """Each runtime that is installed; torchao's import notes go to /dev/null (the template's stderr is
    the user's terminal)."""
    logging.getLogger("torchao").setLevel(logging.ERROR)
    with quiet_stderr():
        for name in RUNTIMES:
            try:
                importlib.import_module(name)
            except ImportError:
                continue
        importlib.import_module("harness.backends.registry")


_import_runtimes()
