"""The variant catalog: every conversion recipe a profile may name, as data.

Converters implement these recipes; the harness reads the format to pick a backend (the backend classes
say which format each runs: `harness.backends.registry.format_backend`) and the family to pick a parity
gate. Keeping the catalog here (the bottom layer) lets both read it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# The closed vocabularies every layer names: here, in the bottom layer, so profiles, converters and the
# harness share one definition (`harness.results.schema` re-exports them beside the results' own).
Format = Literal["torch", "onnx", "coreml", "executorch"]
Device = Literal["cpu", "gpu", "ane"]  # a profile may also say "all" (`profiles.schema.DeviceChoice`)


@dataclass(frozen=True)
class Variant:
    name: str
    format: Format
    family: str  # parity gate family: "fp32" | "fp16" | "int8" | "int4" | "palettized"
    summary: str
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def unfused_adapter(self) -> bool:
        """A recipe that keeps a LoRA adapter's branch in the graph: it converts only `BASE+ADAPTER` models."""
        return self.recipe.get("lora") == "unfused"

    @property
    def calibrated(self) -> bool:
        """True when the recipe runs calibration inputs (so they are part of its cache key)."""
        return self.recipe.get("quant") == "int8-static" or bool(self.recipe.get("activations"))


_OPSET = 18
_FP16_BASE = {"precision": "fp16", "target": "iOS17"}
_W8 = {"weights": "linear", "dtype": "int8", "granularity": "per_channel"}

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("torch-fp32", "torch", "fp32", "the PyTorch eager reference, measured like any variant"),
        Variant(
            "coreml-fp32",
            "coreml",
            "fp32",
            "mlprogram, compute precision FLOAT32",
            {"precision": "fp32", "target": "iOS17"},
        ),
        Variant("coreml-fp16", "coreml", "fp16", "mlprogram, compute precision FLOAT16", dict(_FP16_BASE)),
        Variant("coreml-w8", "coreml", "int8", "weights int8, linear symmetric, per channel", {**_FP16_BASE, **_W8}),
        Variant(
            "coreml-w4",
            "coreml",
            "int4",
            "weights int4, linear symmetric, per block of 32 (iOS18)",
            {
                "precision": "fp16",
                "target": "iOS18",
                "weights": "linear",
                "dtype": "int4",
                "granularity": "per_block",
                "block_size": 32,
            },
        ),
        Variant(
            "coreml-pal6",
            "coreml",
            "palettized",
            "weights palettized to 6 bits, k-means, per tensor",
            {**_FP16_BASE, "weights": "palettize", "nbits": 6},
        ),
        Variant(
            "coreml-pal4",
            "coreml",
            "palettized",
            "weights palettized to 4 bits, k-means, per tensor",
            {**_FP16_BASE, "weights": "palettize", "nbits": 4},
        ),
        Variant(
            "coreml-w8a8",
            "coreml",
            "int8",
            "weights and activations int8, calibrated (macOS only)",
            {**_FP16_BASE, **_W8, "activations": "int8"},
        ),
        Variant(
            "onnx-fp32",
            "onnx",
            "fp32",
            "torch.onnx export (torch.export-based; TorchScript fallback)",
            {"opset": _OPSET},
        ),
        Variant(
            "onnx-fp16",
            "onnx",
            "fp16",
            "fp16 weights and compute, fp32 inputs and outputs kept",
            {"opset": _OPSET, "quant": "fp16"},
        ),
        Variant(
            "onnx-int8-dynamic",
            "onnx",
            "int8",
            "dynamic quantization, int8 weights",
            {"opset": _OPSET, "quant": "int8-dynamic"},
        ),
        Variant(
            "onnx-int8-static",
            "onnx",
            "int8",
            "QDQ static int8, per channel, calibrated (MinMax)",
            {"opset": _OPSET, "quant": "int8-static", "per_channel": True},
        ),
        Variant(
            "onnx-w4",
            "onnx",
            "int4",
            "4-bit weight-only MatMul (MatMulNBits), block 32, symmetric",
            {"opset": _OPSET, "quant": "matmul-4bit", "block_size": 32, "min_matmul_share_of_compute": 0.5},
        ),
        Variant(
            "onnx-lora-unfused",
            "onnx",
            "fp32",
            "an adapter model with its LoRA branch kept in the graph (W x + B A x), fp32",
            {"opset": _OPSET, "lora": "unfused", "fused": "onnx-fp32"},
        ),
        Variant("et-xnnpack-fp32", "executorch", "fp32", "ExecuTorch .pte, XNNPACK delegate", {"delegate": "xnnpack"}),
        Variant(
            "et-lora-unfused",
            "executorch",
            "fp32",
            "ExecuTorch .pte, XNNPACK delegate, an adapter model with its LoRA branch kept in the graph",
            {"delegate": "xnnpack", "lora": "unfused", "fused": "et-xnnpack-fp32"},
        ),
        Variant(
            "et-xnnpack-int8",
            "executorch",
            "int8",
            "ExecuTorch .pte, XNNPACK delegate, PT2E static int8 per channel, calibrated",
            {"delegate": "xnnpack", "quant": "int8-static", "per_channel": True},
        ),
        Variant(
            "et-coreml-fp16",
            "executorch",
            "fp16",
            "ExecuTorch .pte, Core ML delegate, FLOAT16 (runs on macOS)",
            {"delegate": "coreml", "precision": "fp16", "target": "iOS17"},
        ),
        Variant(
            "et-mps",
            "executorch",
            "fp16",
            "ExecuTorch .pte, MPS delegate, where the installed ExecuTorch has it (1.5 removed it)",
            {"delegate": "mps"},
        ),
    ]
}


ADAPTER_SEPARATOR = "+"  # `BASE+ADAPTER` (`profiles.zoo.adapters`)


def all_variants(models: list[str]) -> list[str]:
    """What `variants = ["all"]` means: every recipe, the unfused-adapter ones only when a model has an
    adapter. They build nothing for any other model, and `all` must not grow a profile of plain models
    (`default`, `genai`) by cases that could only be skipped."""
    with_adapter = any(ADAPTER_SEPARATOR in model for model in models)
    return [name for name, variant in VARIANTS.items() if with_adapter or not variant.unfused_adapter]
