"""What a model computes, as a hash: the model half of the artifact cache key.

A key that covers only code, classes and weights mis-hits: two builds of one model that differ in a
flag `forward` reads (`self.repeat_last`, a `LayerNorm` eps, `gelu(approximate=...)`, a config object)
share it, and the second build would be measured with the first one's artifact. So the key also covers

- **every non-tensor attribute of every submodule**, recursively into containers, dataclasses and plain
  objects (torch's own bookkeeping left out), and every buffer, persistent or not;
- **the module-level settings** (numbers, strings, containers, enums, dataclasses, arrays, paths) of
  the user modules that define the model's classes and factory: a flag read from the environment at
  import time lands there.

Why not the `torch.export` graph, which would also see what `forward` reads at call time? Exporting
costs seconds per process (importing torch.export and dynamo) plus a fraction of one per model, which
would take a cache hit below the 10x speed-up over a cold conversion that the cache must keep; the walk
above costs a small fraction of a second (figures in `docs/cache.md`). What it cannot see is a value
`forward` reads from outside the model at call time (`os.environ` inside `forward`); keep such switches
in attributes or module-level settings.

The parts are kept apart in a short summary (`inputs`, plus one line per attribute), which the cache
stores beside each entry so `bench convert --explain` can say why a lookup missed.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import inspect
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from profiles.zoo import LoadedModel

MAX_DEPTH = 6
MAX_SHOWN = 80  # characters of an attribute's value kept in the summary
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass
class Fingerprint:
    """`digest` keys the cache; the rest says what went into it."""

    digest: str
    name: str = ""
    inputs: dict[str, str] = field(default_factory=dict)  # part -> short digest or status
    attributes: dict[str, str] = field(default_factory=dict)  # submodule.attr or module.SETTING -> value, shortened

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "inputs": self.inputs, "attributes": self.attributes}


def _short(digest: Any) -> str:
    return digest.hexdigest()[:16]


def _torch_private() -> frozenset[str]:
    """The instance attributes every `nn.Module` has: torch's bookkeeping, not the model's settings."""
    import torch

    return frozenset(vars(torch.nn.Module())) | {"training"}


def canonical(value: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> str:
    """A stable text for a value: equal for equal settings across processes (no memory addresses, no
    set ordering), different when a setting differs."""
    import numpy as np
    import torch

    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, torch.Tensor | np.ndarray):
        array = value.detach().cpu().contiguous().numpy() if isinstance(value, torch.Tensor) else value
        return f"array{tuple(array.shape)}:{array.dtype}:{hashlib.sha256(array.tobytes()).hexdigest()[:16]}"
    if isinstance(value, torch.dtype | torch.device | torch.Size):
        return str(value)
    if depth >= MAX_DEPTH or id(value) in seen:
        return f"<{type(value).__qualname__}>"
    inner = seen | {id(value)}
    if isinstance(value, list | tuple):
        return f"{type(value).__name__}[{', '.join(canonical(v, depth + 1, inner) for v in value)}]"
    if isinstance(value, set | frozenset):
        return f"set{{{', '.join(sorted(canonical(v, depth + 1, inner) for v in value))}}}"
    if isinstance(value, dict):
        items = sorted((canonical(k, depth + 1, inner), canonical(v, depth + 1, inner)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(value, torch.nn.Module):
        return f"module {type(value).__module__}.{type(value).__qualname__}"
    if inspect.isfunction(value) or inspect.ismethod(value):
        function = getattr(value, "__func__", value)
        code = function.__code__
        body = hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16]
        return f"function {function.__module__}.{function.__qualname__}:{body}"
    if inspect.isclass(value) or inspect.isbuiltin(value) or inspect.ismodule(value):
        return f"{type(value).__name__} {getattr(value, '__module__', '')}.{getattr(value, '__qualname__', value)}"
    if dataclasses.is_dataclass(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return f"{type(value).__qualname__}{canonical(fields, depth + 1, inner)}"
    if hasattr(value, "__dict__") and vars(value):
        return f"{type(value).__qualname__}{canonical(vars(value), depth + 1, inner)}"
    return f"{type(value).__qualname__}:{_ADDRESS.sub('', repr(value))}"


def module_attributes(module: Any) -> Iterator[tuple[str, str]]:
    """(dotted name, canonical value) of every non-tensor attribute of every submodule."""
    private = _torch_private()
    for prefix, submodule in module.named_modules():
        for name, value in sorted(vars(submodule).items()):
            if name not in private:
                yield (f"{prefix}.{name}" if prefix else name), canonical(value)


def _source_files(model: LoadedModel) -> list[Path]:
    import torch

    torch_dir = Path(torch.__file__).parent
    files = set()
    for obj in [model.factory, *(type(m) for m in model.module.modules())]:
        try:
            source = inspect.getsourcefile(obj) if obj is not None else None
        except TypeError:
            continue
        if source and not Path(source).is_relative_to(torch_dir):
            files.add(Path(source))
    return sorted(files)


def _settings(value: Any) -> bool:
    """Module-level values that are settings, not machinery (loggers, caches of objects, functions)."""
    import numpy as np
    import torch

    plain = (type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset, enum.Enum)
    return isinstance(value, (*plain, PurePath, np.ndarray, torch.Tensor, torch.dtype)) or (
        dataclasses.is_dataclass(value) and not inspect.isclass(value)
    )


def module_settings(model: LoadedModel) -> Iterator[tuple[str, str]]:
    """(module.NAME, canonical value) of the settings of every user module defining the model."""
    import torch

    torch_dir = Path(torch.__file__).parent
    names = {getattr(model.factory, "__module__", None), *(type(m).__module__ for m in model.module.modules())}
    for module_name in sorted(n for n in names if n and n in sys.modules):
        module = sys.modules[module_name]
        source = getattr(module, "__file__", None)
        if not source or Path(source).is_relative_to(torch_dir):
            continue
        for name, value in sorted(vars(module).items()):
            if not name.startswith("__") and _settings(value):
                yield f"{module_name}.{name}", canonical(value)


def fingerprint_model(model: LoadedModel, name: str = "") -> Fingerprint:
    parts: dict[str, Any] = {
        key: hashlib.sha256() for key in ("code", "classes", "weights", "attributes", "settings", "inputs")
    }
    for path in _source_files(model):
        parts["code"].update(path.read_bytes())
    for module_name, module in model.module.named_modules():
        parts["classes"].update(f"{module_name}:{type(module).__module__}.{type(module).__qualname__}".encode())
    for tensor_name, tensor in [*model.module.named_parameters(), *model.module.named_buffers()]:
        parts["weights"].update(f"{tensor_name}={canonical(tensor)}".encode())
    attributes = dict(module_attributes(model.module))
    if model.unfused is not None:  # an adapter: its factors and settings (rank, scaling), not only their merge
        for tensor_name, tensor in model.unfused.named_parameters():
            parts["weights"].update(f"unfused.{tensor_name}={canonical(tensor)}".encode())
        attributes |= {f"unfused.{name}": value for name, value in module_attributes(model.unfused)}
    for attribute, value in attributes.items():
        parts["attributes"].update(f"{attribute}={value}\n".encode())
    settings = dict(module_settings(model))
    for setting, value in settings.items():
        parts["settings"].update(f"{setting}={value}\n".encode())
    for tensor in model.example_inputs:
        parts["inputs"].update(f"{tuple(tensor.shape)}:{tensor.dtype}".encode())
    inputs = {key: _short(digest) for key, digest in parts.items()}
    digest = hashlib.sha256(repr(sorted(inputs.items())).encode()).hexdigest()
    shown = {key: _shorten(value) for key, value in {**attributes, **settings}.items()}
    return Fingerprint(digest, name, inputs, shown)


def _shorten(value: str) -> str:
    return value if len(value) <= MAX_SHOWN else value[: MAX_SHOWN - 3] + "..."
