"""The variant catalog: every conversion recipe a profile may name, as data.

Converters implement these recipes; the harness reads the format to pick a backend and the family to
pick a parity gate. Keeping the catalog here (the bottom layer) lets both read it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Variant:
    name: str
    format: str  # "torch" | "onnx" | "coreml"
    family: str  # parity gate family: "fp32" | "fp16" | "int8" | "int4" | "palettized"
    summary: str
    recipe: dict[str, Any] = field(default_factory=dict)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("torch-fp32", "torch", "fp32", "the PyTorch eager reference, measured like any variant"),
        Variant(
            "onnx-fp32", "onnx", "fp32", "torch.onnx export (torch.export-based; TorchScript fallback)", {"opset": 18}
        ),
    ]
}

FORMAT_BACKEND = {"torch": "torch", "onnx": "onnxruntime", "coreml": "coreml"}
