"""What the runtimes would write outside a run, kept inside it: the environment every worker of a run
inherits (workers are spawned, so they read it at start).

- TorchInductor caches compiled kernels in `$TMPDIR/torchinductor_$USER` (`torch._inductor`'s default),
  which outlives the run; it goes to the run's own temporary directory, removed with it. A user who set
  `TORCHINDUCTOR_CACHE_DIR` keeps their choice.
- ONNX Runtime's telemetry (onnxruntime/core/platform/telemetry_1ds.cc and posix/device_id.cc) writes a
  device id and an event database under `$XDG_CACHE_HOME` or `$HOME/.cache`, in
  `Microsoft/DeveloperTools/.onnxruntime`, and with a read-only HOME prints a coloured warning into the
  worker's output. `ORT_DISABLE_TELEMETRY=1` switches it off (nothing is written); a user who set it
  keeps their value. It is read when ONNX Runtime starts its environment, which the parent does too (a
  backend's `available()`), so the command line sets it as it starts (`quiet_telemetry`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"
ORT_TELEMETRY = "ORT_DISABLE_TELEMETRY"


def quiet_telemetry() -> None:
    """ONNX Runtime's telemetry off for this process and every worker it starts, unless the user chose."""
    os.environ.setdefault(ORT_TELEMETRY, "1")


@contextmanager
def run_environment(work: Path) -> Iterator[None]:
    """The variables above set for the run's duration (its workers inherit them), then restored."""
    wanted = {INDUCTOR_CACHE: str(work / "torchinductor"), ORT_TELEMETRY: "1"}
    added = [name for name in wanted if name not in os.environ]
    for name in added:
        os.environ[name] = wanted[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
