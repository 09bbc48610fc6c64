"""A build known to be N % slower, for the gate's tests and the validation study: no part of the package.

A slower build is an artifact that runs slower. `slowed_copy` makes one: the artifact's files linked into a
directory of their own with a mark (`slowed.json`) holding a fraction. `SlowedOnnxRuntime` is ONNX Runtime
(a subclass that delegates every step to it) whose sessions of a marked copy busy-wait that fraction of
each call's own duration after the call (`slowed`); any other artifact runs as it does on ONNX Runtime.

A process registers it by naming it in `$ONDEVICE_BENCH_BACKENDS` (`harness.backends.registry`), where it
replaces the built-in `onnxruntime` in that process and in every worker it spawns, which inherit the
variable; results still say `onnxruntime`, so a run compares with a baseline as any other. A test or a
tool that pairs arms itself stages the slowed arm with `slowed_copy`. For `bench run`, `SlowerBuild5` is
the same backend staging every artifact it runs as a copy marked 5 % (`Backend.staging`): the parent
stages the run's artifacts and never the baseline's (the gate pairs those as recorded), so against a
baseline only the current build is slowed, as a regression would be. `SLOWER_BUILDS` holds the ones
`environment` names, e.g. `bench run ci --baseline base.json` with `environment(0.05)` in its environment.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backends.base import LoadRequest, Session
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.backends.registry import BACKENDS_VARIABLE

MARK = "slowed.json"
ROOT = Path(__file__).resolve().parent.parent  # the repository: on the import path of a `bench` it starts


def slowed(call: Callable[[], Any], fraction: float) -> Callable[[], Any]:
    """The real call, then a busy-wait of `fraction` of the time it took."""
    if fraction <= 0:
        return call

    def wrapped() -> Any:
        started = time.perf_counter_ns()
        out = call()
        until = started + int((time.perf_counter_ns() - started) * (1 + fraction))
        while time.perf_counter_ns() < until:
            pass
        return out

    return wrapped


def slowed_copy(source: Path, directory: Path, fraction: float) -> Path:
    """The artifact at `source` as a build slowed by `fraction`: every file beside it linked into the new
    `directory` (an ONNX graph finds its external data by name), and the mark; the path of its copy."""
    directory.mkdir(parents=True)
    for entry in source.parent.iterdir():
        (directory / entry.name).symlink_to(entry.resolve())
    (directory / MARK).write_text(json.dumps({"fraction": fraction}))
    return directory / source.name


def marked_fraction(artifact_path: str) -> float:
    """The fraction an artifact's copy is marked with; 0 for an artifact that is not a slowed copy."""
    mark = Path(artifact_path).parent / MARK
    return float(json.loads(mark.read_text())["fraction"]) if mark.exists() else 0.0


class _SlowedSession(Session):
    def __init__(self, real: Session, fraction: float) -> None:
        self.real = real
        self.fraction = fraction

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.real.run(inputs)

    def runner(self, inputs: list[np.ndarray]) -> Callable[[], Any]:
        return slowed(self.real.runner(inputs), self.fraction)

    def sync(self) -> None:
        self.real.sync()

    def describe(self) -> dict[str, Any]:
        return self.real.describe()

    def placement(self) -> dict[str, Any]:
        return self.real.placement()

    def gpu_memory(self) -> dict[str, Any] | None:
        return self.real.gpu_memory()


class SlowedOnnxRuntime(OnnxRuntimeBackend):
    """ONNX Runtime, each session of a marked copy slowed by its mark; stages nothing itself."""

    build_fraction: ClassVar[float] = 0.0  # above 0: every artifact it runs is staged as a copy marked so

    def __init__(self) -> None:
        super().__init__()
        self.fraction = 0.0

    @classmethod
    def staging(cls, notes: dict[str, Any] | None) -> bool | None:
        return True if cls.build_fraction > 0 else None

    @classmethod
    def stage(cls, source: Path, device: str, directory: Path, rewrite: bool) -> Path:
        return slowed_copy(source, directory, cls.build_fraction)

    def prepare(self, request: LoadRequest) -> None:
        super().prepare(request)
        self.fraction = marked_fraction(request.artifact_path)  # read here, outside the timed load

    def load(self, request: LoadRequest) -> Session:
        session = super().load(request)
        return _SlowedSession(session, self.fraction) if self.fraction else session


class SlowerBuild2(SlowedOnnxRuntime):
    build_fraction = 0.02


class SlowerBuild5(SlowedOnnxRuntime):
    build_fraction = 0.05


class SlowerBuild10(SlowedOnnxRuntime):
    build_fraction = 0.10


SLOWER_BUILDS = {cls.build_fraction: cls for cls in (SlowerBuild2, SlowerBuild5, SlowerBuild10)}


def environment(fraction: float | None = None) -> dict[str, str]:
    """The variables that register the slowed backend in a process started with them (the repository put
    on its import path): `SlowedOnnxRuntime`, or with `fraction` (a key of `SLOWER_BUILDS`) the slower build."""
    name = (SLOWER_BUILDS[fraction] if fraction is not None else SlowedOnnxRuntime).__name__
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {BACKENDS_VARIABLE: f"{__name__}:{name}", "PYTHONPATH": path}
