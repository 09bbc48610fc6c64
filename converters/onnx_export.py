"""ONNX variants: torch.onnx export (the torch.export-based exporter first, TorchScript as fallback)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from converters.base import ConversionContext, Converted, Converter
from profiles.catalog import Variant
from profiles.errors import ConversionError
from profiles.zoo import LoadedModel

log = logging.getLogger(__name__)


def output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def export_fp32(model: LoadedModel, path: Path, opset: int) -> str:
    """Export and return which exporter wrote the file."""
    import torch

    with torch.inference_mode():
        outputs = model.module(*model.example_inputs)
    count = 1 if isinstance(outputs, torch.Tensor) else len(outputs)
    kwargs = {"input_names": model.input_names, "output_names": output_names(count), "opset_version": opset}
    try:
        torch.onnx.export(model.module, model.example_inputs, str(path), dynamo=True, **kwargs)
        return "torch.onnx dynamo"
    except Exception as dynamo_error:
        log.warning("torch.export-based ONNX export failed (%s); trying the TorchScript exporter", dynamo_error)
        for stale in path.parent.iterdir():
            stale.unlink()
        try:
            torch.onnx.export(model.module, model.example_inputs, str(path), dynamo=False, **kwargs)
        except Exception as script_error:
            first = str(script_error).strip().splitlines()[0] if str(script_error).strip() else ""
            raise ConversionError(
                f"torch.onnx export failed: dynamo: {type(dynamo_error).__name__}; "
                f"torchscript: {type(script_error).__name__}: {first}"
            ) from script_error
        return "torch.onnx torchscript"


class OnnxConverter(Converter):
    format = "onnx"

    def convert(self, model: LoadedModel, variant: Variant, out_dir: Path, ctx: ConversionContext) -> Converted:
        opset = int(variant.recipe.get("opset", 18))
        path = export_fp32(model, out_dir / "model.onnx", opset)
        return Converted("model.onnx", path, opset=opset)

    def inspect(self, main_file: Path) -> tuple[dict[str, int], dict[str, int]]:
        import numpy as np
        import onnx

        graph = onnx.load(str(main_file), load_external_data=False).graph
        ops = Counter(node.op_type for node in graph.node)
        weights: Counter[str] = Counter()
        for init in graph.initializer:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
            name = onnx.TensorProto.DataType.Name(init.data_type).lower()
            weights[name] += int(np.prod(init.dims, dtype=np.int64)) * np.dtype(dtype).itemsize
        return dict(ops), dict(weights)
