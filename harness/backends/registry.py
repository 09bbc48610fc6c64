"""Every backend, by name: the one list. Adding one: a new module and one line in `BUILT_IN`; the tables the
rest of the harness reads (a format's backend, an artifact suffix's backend) derive from the classes.

A backend from outside the package (the slower build the gate's tests and the validation study make,
`tools/slowed_backend.py`; a runtime of one's own) is named in `$ONDEVICE_BENCH_BACKENDS`: `module:Class`
references, comma-separated, each to a `Backend` subclass, imported by `backends()`; one with a built-in
backend's name replaces it. An environment variable rather than a call that registers a class: each
worker is a spawned process, a fresh interpreter that imports nothing of its parent's but inherits its
environment, so the parent and every worker of a run read the same list, and a `bench` command started
with the variable set has it in all its processes.
"""

from __future__ import annotations

import importlib
import os

from harness.backends.base import Backend
from harness.backends.coreml import CoreMLBackend
from harness.backends.executorch import ExecuTorchBackend
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.backends.torch_eager import TorchBackend
from profiles.errors import ConfigError

BUILT_IN: tuple[type[Backend], ...] = (TorchBackend, OnnxRuntimeBackend, CoreMLBackend, ExecuTorchBackend)
BACKENDS: dict[str, type[Backend]] = {cls.name: cls for cls in BUILT_IN}
BACKENDS_VARIABLE = "ONDEVICE_BENCH_BACKENDS"


def _named(reference: str) -> type[Backend]:
    module, _, attribute = reference.partition(":")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"${BACKENDS_VARIABLE}: cannot import {reference!r}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, Backend)):
        raise ConfigError(f"${BACKENDS_VARIABLE}: {reference!r} is not a Backend subclass")
    return found


def backends() -> dict[str, type[Backend]]:
    """The built-in backends, then those `$ONDEVICE_BENCH_BACKENDS` names (read at each call, so a process
    that sets it before it starts its workers has them too); a reference that does not import or name a
    `Backend` subclass is a `ConfigError`."""
    text = os.environ.get(BACKENDS_VARIABLE, "")
    added = [_named(part.strip()) for part in text.split(",") if part.strip()]
    return {**BACKENDS, **{cls.name: cls for cls in added}}


def format_backend(format: str) -> str:
    """The name of the backend that runs a catalog format's artifacts."""
    return {cls.format: name for name, cls in backends().items()}[format]


def suffix_backends() -> dict[str, str]:
    """Each artifact suffix a backend takes (`Backend.suffixes`), and the backend's name."""
    return {suffix: name for name, cls in backends().items() for suffix in cls.suffixes}
