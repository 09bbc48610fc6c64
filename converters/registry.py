"""Every converter, by the format it writes. Adding one: a new module and one line here."""

from __future__ import annotations

from converters.base import Converter
from converters.coreml.convert import CoreMLConverter
from converters.executorch import ExecuTorchConverter
from converters.onnx.export import OnnxConverter
from converters.torch_state import TorchStateDict

CONVERTERS: dict[str, type[Converter]] = {
    cls.format: cls for cls in (TorchStateDict, OnnxConverter, CoreMLConverter, ExecuTorchConverter)
}
