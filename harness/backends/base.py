"""The backend seam: one small class per runtime, registered in `harness.backends.registry`. The class says
everything the rest of the harness asks of a runtime (the format it runs, its artifact suffixes, devices,
probe kits, staging), so adding a backend is its module and one line in the registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.results.schema import GpuMemory


@dataclass(frozen=True)
class LoadRequest:
    """What a worker hands a backend: the artifact and how to run it."""

    artifact_path: str
    device: str
    threads: int
    model_ref: str  # the torch backend rebuilds the module from its factory


class Session(ABC):
    """A loaded artifact, ready to run."""

    @abstractmethod
    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One inference on numpy inputs, outputs as float numpy arrays (parity uses this)."""

    @abstractmethod
    def runner(self, inputs: list[np.ndarray]) -> Callable[[], Any]:
        """A zero-argument call doing one inference on bound inputs, with as little overhead as the
        runtime allows (the timing loop calls it)."""

    def sync(self) -> None:  # noqa: B027  (a default: CPU runtimes have nothing queued)
        """Wait for queued device work, so the clock reads finished work. CPU runtimes return at once."""

    def describe(self) -> dict[str, Any]:
        """What actually ran: providers or compute units taken, versions."""
        return {}

    def placement(self) -> dict[str, Any]:
        """Ops per device where the runtime can tell; empty where it cannot."""
        return {}

    def gpu_memory(self) -> GpuMemory | None:
        """Device memory in use or at peak, labelled with its source; None where no GPU ran the case."""
        return None


class DeviceUnavailable(Exception):
    """The runtime did not take the requested device (never measured under another label)."""


def _any_host() -> str | None:
    return None


@dataclass(frozen=True)
class ProbeKit:
    """What `bench devices --check` loads through a backend (`harness.backends.probe`): a tiny artifact
    written into an empty directory, its inputs, and the line saying where it ran."""

    artifact: Callable[[Path], str]
    inputs: Callable[[], list[np.ndarray]]
    placed: Callable[[Session, str], str]
    section: str | None = None  # a heading of its own, for a second probe of one backend
    host_reason: Callable[[], str | None] = _any_host  # why this host cannot run the kit at all, or None


class Backend(ABC):
    name: ClassVar[str]
    format: ClassVar[str]  # the catalog format whose artifacts it runs (`profiles.catalog.Variant.format`)
    devices: ClassVar[tuple[str, ...]]
    suffixes: ClassVar[tuple[str, ...]] = ()  # artifact files `bench ab` takes for this runtime, by suffix
    directory_suffixes: ClassVar[tuple[str, ...]] = ()  # those of `suffixes` whose artifacts are directories
    probe_kits: ClassVar[tuple[ProbeKit, ...]]  # `bench devices --check`: one line per device of each kit
    baseline_refusal: ClassVar[str | None] = None  # why the baseline gate cannot pair its artifacts, or None
    template: ClassVar[str | None] = None  # the `harness.process.templates` module its workers fork from

    @classmethod
    def staging(cls, notes: dict[str, Any] | None) -> bool | None:
        """Whether the parent stages an artifact for each device before any process measures it
        (`harness.orchestrate.staging`), read from the converter's notes of it (None: an artifact built
        elsewhere, without them): None when it does not, else the `rewrite` that `stage` is given."""
        return None

    @classmethod
    def stage(cls, source: Path, device: str, directory: Path, rewrite: bool) -> Path:
        """The artifact as it is measured on `device`, written to `directory` (by the staging worker, for
        an artifact `staging` chose)."""
        raise NotImplementedError(f"{cls.name} stages no artifact")

    @abstractmethod
    def available(self, device: str) -> str | None:
        """None when this host can run `device`, else the reason it cannot (cheap: no heavy imports)."""

    def prepare(self, request: LoadRequest) -> None:  # noqa: B027  (a default: nothing to prepare)
        """Heavy imports, thread settings and anything else outside what `load` should time."""

    @abstractmethod
    def load(self, request: LoadRequest) -> Session:
        """Load the artifact for the request's device; raise `DeviceUnavailable` if the runtime declines it."""

    def admit(self, session: Session, request: LoadRequest) -> None:  # noqa: B027  (a default: nothing to check)
        """Checks that need the loaded model but are no part of loading it (Core ML reads its compute plan
        here), run after the timed cold load so no app's load time carries them; raise `DeviceUnavailable`
        to refuse the device."""

    def close(self) -> None:  # noqa: B027  (a default: nothing left behind)
        """Remove what loading left on disk (compiled models in temp directories); the worker calls it last."""
