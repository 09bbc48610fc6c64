"""One exception tree for the whole project; the CLI catches `BenchError` and prints one line.

It lives in `profiles`, the bottom layer, because every other package imports from it.

    BenchError
    ├── ConfigError        a profile or a flag is wrong (exit 2)
    ├── ModelError         a model reference cannot be resolved (exit 2)
    │   └── ProtocolError  the model's factory returned what the model protocol does not allow (exit 2)
    ├── SchemaError        a results file cannot be read (exit 2)
    ├── NothingToRun       every case was refused by this host (exit 2)
    ├── NothingToDo        the request selects no work, which is not a mistake (exit 0): an empty shard
    ├── ConversionError    a converter failed (one failed result, the run goes on)
    └── BackendError       a backend failed to load or run an artifact (one failed result)

Third-party exceptions are translated at the plug-in boundary with ``raise XError(msg) from exc``.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BenchError",
    "ConfigError",
    "ConversionError",
    "ModelError",
    "NothingToDo",
    "NothingToRun",
    "ProtocolError",
    "SchemaError",
]


class BenchError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(BenchError):
    exit_code = 2


class ModelError(BenchError):
    exit_code = 2


class ProtocolError(ModelError):
    """Bad input found only by calling the factory (in a worker): the run stops with this line, exit 2,
    where a factory that raises or crashes fails only its own model's cases."""


class SchemaError(BenchError):
    exit_code = 2


class NothingToRun(BenchError):
    exit_code = 2


class NothingToDo(BenchError):
    exit_code = 0


class ConversionError(BenchError):
    pass


class BackendError(BenchError):
    pass
