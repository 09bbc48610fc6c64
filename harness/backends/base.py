"""The backend seam: one small class per runtime, registered in `harness.backends.registry`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class LoadRequest:
    """What a worker hands a backend: the artifact and how to run it."""

    artifact_path: str
    device: str
    threads: int
    model_ref: str  # the torch backend rebuilds the module from its factory


class Session:
    """A loaded artifact, ready to run."""

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One inference on numpy inputs, outputs as float numpy arrays (parity uses this)."""
        raise NotImplementedError

    def runner(self, inputs: list[np.ndarray]) -> Callable[[], Any]:
        """A zero-argument call doing one inference on bound inputs, with as little overhead as the
        runtime allows (the timing loop calls it)."""
        raise NotImplementedError

    def sync(self) -> None:
        """Wait for queued device work, so the clock reads finished work. CPU runtimes return at once."""

    def describe(self) -> dict[str, Any]:
        """What actually ran: providers or compute units taken, versions."""
        return {}

    def placement(self) -> dict[str, Any]:
        """Ops per device where the runtime can tell; empty where it cannot."""
        return {}

    def gpu_memory(self) -> dict[str, Any] | None:
        """Device memory in use or at peak, labelled with its source; None where no GPU ran the case."""
        return None


class DeviceUnavailable(Exception):
    """The runtime did not take the requested device (never measured under another label)."""


class Backend:
    name: ClassVar[str]
    devices: ClassVar[tuple[str, ...]]

    def available(self, device: str) -> str | None:
        """None when this host can run `device`, else the reason it cannot (cheap: no heavy imports)."""
        raise NotImplementedError

    def prepare(self, request: LoadRequest) -> None:
        """Heavy imports, thread settings and anything else outside what `load` should time."""

    def load(self, request: LoadRequest) -> Session:
        raise NotImplementedError
