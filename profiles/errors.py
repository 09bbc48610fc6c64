"""One exception tree for the whole project: every error a user can cause is a `BenchError`, and the CLI
boundary (`bench.cli.main`) is the one place that prints it, as `error: <message>` on one line, and exits
with its `exit_code`.

It lives in `profiles`, the bottom layer, because every other package imports from it.

    BenchError             (exit 1)
    ├── ConfigError        a profile, a flag or an output path is wrong (exit 2)
    ├── ModelError         a model reference cannot be resolved (exit 2)
    │   └── ProtocolError  the model's factory returned what the model protocol does not allow (exit 2)
    ├── SchemaError        a results file cannot be read (exit 2)
    ├── NothingToRun       every case was refused by this host (exit 2)
    ├── ConversionError    a converter failed (one failed result, the run goes on)
    └── StoreError         the results store could not take a write (the run goes on without it, exit 1)

What is not an error is not here: a variant a converter cannot build on this host and a device a runtime
declines are skipped cases (`converters.base.VariantSkipped`, `harness.backends.base.DeviceUnavailable`
carry the reason to the one place that records it), and an empty shard is a run with nothing to do.

Third-party exceptions are translated at the plug-in boundary with ``raise XError(msg) from exc``.
"""

from __future__ import annotations

__all__ = [
    "BenchError",
    "ConfigError",
    "ConversionError",
    "ModelError",
    "NothingToRun",
    "ProtocolError",
    "SchemaError",
    "StoreError",
    "first_line",
]


class BenchError(Exception):
    """Base of every error this project raises on purpose; its message is one line a user can act on."""

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


class ConversionError(BenchError):
    pass


def first_line(exc: BaseException) -> str:
    """`Type: first line of the message`: how a third-party exception is named in a one-line reason (its
    other lines are tracebacks or dumps of the graph, which go to the log)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".strip()


class StoreError(BenchError):
    """A write the results store refused (the database is gone, locked past its timeout, or full)."""
