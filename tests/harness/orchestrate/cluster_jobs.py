"""The jobs the cluster tests hand a Ray executor: module-level functions of a module the nodes' workers
import by name (`tests.harness.orchestrate.cluster_jobs`; a test module itself is imported by pytest under
a name of its own, which a worker could not import)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from harness.process.messages import Stage

HOLD_S = 60.0  # how long a held job waits for its release file: far past any test's end


def stamp(path: str, send: Any) -> None:
    """A job that says it started (and whether Ray came into its process) and writes its Ray worker's pid
    (its parent's), then ends."""
    send(Stage("stamped", "ray imported" if "ray" in sys.modules else None))
    Path(path).write_text(str(os.getppid()))


def hold(path: str, send: Any) -> None:
    """A job that writes its Ray worker's pid, then waits for a release that never comes."""
    Path(path).write_text(str(os.getppid()))
    release = Path(path).with_suffix(".release")
    deadline = time.monotonic() + HOLD_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def busy(seconds: float, send: Any) -> None:
    """A measuring job's stand-in: the CPU busy for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
