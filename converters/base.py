"""The converter seam: one small class per format, registered under the format's name."""

from __future__ import annotations

import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from profiles.catalog import Variant
from profiles.zoo import LoadedModel


class VariantSkipped(Exception):
    """A recipe that cannot be built on this host or for this model, with the reason (not an error).

    `about_model` marks a reason that follows from the model alone (e.g. no MatMul weights for a
    MatMul-only recipe): the cache keeps it, so the next run does not convert again to find it out.
    """

    def __init__(self, reason: str, about_model: bool = False) -> None:
        super().__init__(reason)
        self.about_model = about_model


@dataclass
class ConversionContext:
    """What a recipe may need beyond the model: calibration inputs (one array per model input, N x ...),
    and a per-model memo of intermediate products (the fp32 ONNX export) shared by a process's recipes.

    Intermediate files go under `scratch_root` (the run's work directory, which the parent removes even
    when this process is killed) or the system temp directory; `close()` removes them."""

    calibration: tuple[Any, ...] = ()
    seed: int = 0
    scratch: dict[str, Any] = field(default_factory=dict)
    scratch_root: Path | None = None
    _directories: list[Path] = field(default_factory=list)

    def scratch_dir(self, prefix: str) -> Path:
        directory = Path(tempfile.mkdtemp(prefix=prefix, dir=self.scratch_root))
        self._directories.append(directory)
        return directory

    def close(self) -> None:
        for directory in self._directories:
            shutil.rmtree(directory, ignore_errors=True)
        self._directories.clear()
        self.scratch.clear()

    def __enter__(self) -> ConversionContext:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class Converted:
    """What `convert` reports; sizes and hashes are computed by the caller over every file written."""

    main_file: str
    converter_path: str
    opset: int | None = None
    deployment_target: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class Converter(ABC):
    format: ClassVar[str]

    @abstractmethod
    def convert(self, model: LoadedModel, variant: Variant, out_dir: Path, ctx: ConversionContext) -> Converted:
        """Write the artifact's files into `out_dir` (empty, owned by the caller)."""

    @abstractmethod
    def inspect(self, main_file: Path) -> tuple[dict[str, int], dict[str, int]]:
        """(op histogram, weight bytes by dtype) of a written artifact."""
