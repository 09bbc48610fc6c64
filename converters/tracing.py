"""What a trace froze: the TorchScript tracer's warnings, kept as notes on the artifact.

`torch.jit.trace` (and the TorchScript ONNX exporter built on it) records the operations one example ran:
a branch on a tensor's value (`if x.sum() > 0`) keeps only the branch that example took, and a Python
number read from a tensor (`int(x.max())`) becomes a constant. The tracer says so in a `TracerWarning`
and exports anyway; the artifact then computes something else than the model for other inputs, and its
parity fails with no layer to blame. Each such warning becomes one sentence naming the source line.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NOTE_KEY = "trace_warnings"  # in `Converted.notes` and so in the artifact's notes


def _sentence(message: str, filename: str, lineno: int) -> str:
    where = f"{Path(filename).name}:{lineno}"
    if message.startswith("Converting a tensor to a Python boolean"):
        return f"the exported graph froze a data-dependent branch at {where}: it computes one branch for every input"
    if message.startswith(("Converting a tensor to a Python", "Python value")):
        return f"the exported graph froze a Python value taken from a tensor at {where}: a constant for every input"
    first = message.strip().splitlines()[0] if message.strip() else "TracerWarning"
    return f"the tracer warned at {where}: {first}"


@contextmanager
def tracer_notes() -> Iterator[list[str]]:
    """Collect the tracer's warnings raised inside the block, as sentences (each once) in the yielded
    list, filled when the block ends; every other warning is passed on unchanged."""
    import torch

    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        yield notes
    for record in caught:
        if issubclass(record.category, torch.jit.TracerWarning):
            sentence = _sentence(str(record.message), record.filename, record.lineno)
            if sentence not in notes:
                notes.append(sentence)
        else:
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
