"""`bench devices --check`: a tiny model loaded on every device of every backend, through the same load
path `bench run` takes, to show what really ran where and how long one inference took.

A device a runtime lists but does not use (a virtualised Mac without a Neural Engine or GPU, an execution
provider that took no node) shows up here, before any benchmark is trusted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import Backend, DeviceUnavailable, LoadRequest, Session

DEVICES = ("cpu", "gpu", "ane")
WARMUP_CALLS = 5
TIMED_CALLS = 50
PROBE_MODEL_REF = "harness.backends.probe:probe_model"
PROBE_THREADS = 1  # a sanity figure, not a benchmark: one thread stays stable on a busy or small machine


@dataclass(frozen=True)
class Probe:
    """One backend on one device: where the probe model ran and its median inference time, or why not."""

    backend: str
    device: str
    placed: str | None = None
    ms: float | None = None
    reason: str | None = None
    error: bool = False  # an unexpected failure, as opposed to a device this host does not offer
    section: str | None = None  # the heading its line goes under, where not the backend's name

    @property
    def heading(self) -> str:
        return self.section or self.backend


def probe_model() -> tuple[Any, Any]:
    """The probe for torch and Core ML (a model factory, so `bench run`'s torch path loads it): a few
    convolutions, the ops the Neural Engine is built for, small enough to convert in seconds."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, 10),
        ).eval()
        return module, torch.rand(1, 3, 32, 32)


def median_ms(call: Callable[[], Any], sync: Callable[[], None]) -> float:
    for _ in range(WARMUP_CALLS):
        call()
    sync()
    times = []
    for _ in range(TIMED_CALLS):
        started = time.perf_counter_ns()
        call()
        sync()
        times.append((time.perf_counter_ns() - started) / 1e6)
    return float(np.median(times))


def probe_device(
    backend: Backend, request: LoadRequest, inputs: list[np.ndarray], placed: Callable[[Session, str], str]
) -> Probe:
    """Load, run and time the probe on one device the backend says this host has."""
    try:
        backend.prepare(request)
        session = backend.load(request)
        backend.admit(session, request)
        ms = median_ms(session.runner(inputs), session.sync)
        return Probe(backend.name, request.device, placed=placed(session, request.device), ms=ms)
    except DeviceUnavailable as exc:
        return Probe(backend.name, request.device, reason=str(exc))
    except Exception as exc:  # reported on its line (exit 1), so the other devices are still checked
        return Probe(backend.name, request.device, reason=f"{type(exc).__name__}: {exc}", error=True)
    finally:
        backend.close()


def converted_probe(workdir: Path, variant_name: str) -> str:
    """The probe model as `bench run` converts `variant_name` (Core ML and ExecuTorch probe this way)."""
    from converters.base import ConversionContext
    from converters.registry import CONVERTERS
    from profiles.catalog import VARIANTS
    from profiles.zoo import LoadedModel

    module, example = probe_model()
    variant = VARIANTS[variant_name]
    out = workdir / variant.format
    out.mkdir()
    with ConversionContext() as ctx:
        converted = CONVERTERS[variant.format]().convert(LoadedModel(module, (example,)), variant, out, ctx)
    return str(out / converted.main_file)


def probe_model_inputs() -> list[np.ndarray]:
    return [probe_model()[1].numpy()]


def probe_all(backends: Iterable[type[Backend]]) -> Iterator[Probe]:
    """Each backend's probe kits (`Backend.probe_kits`) on each device, in the order given (the registry's:
    the backends import this module for the probe model, so it takes them rather than importing the
    registry); a kit's artifact is built only where one of its devices is available."""
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as directory:
        for backend_class in backends:
            name = backend_class.name
            for index, kit in enumerate(backend_class.probe_kits):
                path: str | None = None
                for device in DEVICES:
                    backend = backend_class()
                    reason = kit.host_reason() or backend.available(device)
                    if reason is not None:
                        yield Probe(name, device, reason=reason, section=kit.section)
                        continue
                    if path is None:
                        workdir = Path(directory) / f"{name}-{index}"
                        workdir.mkdir()
                        path = kit.artifact(workdir)
                    request = LoadRequest(path, device, PROBE_THREADS, PROBE_MODEL_REF)
                    probe = probe_device(backend, request, kit.inputs(), kit.placed)
                    yield replace(probe, section=kit.section)
