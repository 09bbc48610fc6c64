"""ONNX variants: torch.onnx export (the torch.export-based exporter first, TorchScript as fallback)."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

from converters.base import ConversionContext, Converted, Converter
from converters.onnx import quant as onnx_quant
from converters.tracing import NOTE_KEY, tracer_notes
from profiles.catalog import Variant
from profiles.errors import ConversionError, first_line
from profiles.zoo import LoadedModel, decoder_info

log = logging.getLogger(__name__)


def output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def export_fp32(model: LoadedModel, path: Path, opset: int) -> tuple[str, list[str]]:
    """Export; returns which exporter wrote the file and what its trace froze (`converters.tracing`: only
    the TorchScript exporter traces)."""
    import torch

    with torch.inference_mode():
        outputs = model.module(*model.example_inputs)
    count = 1 if isinstance(outputs, torch.Tensor) else len(outputs)
    kwargs = {"input_names": model.input_names, "output_names": output_names(count), "opset_version": opset}
    try:
        torch.onnx.export(model.module, model.example_inputs, str(path), dynamo=True, **kwargs)
        return "torch.onnx dynamo", []
    except Exception as dynamo_error:
        log.warning("torch.export-based ONNX export failed (%s); trying the TorchScript exporter", dynamo_error)
        for stale in path.parent.iterdir():
            stale.unlink()
        try:
            with tracer_notes() as notes:
                torch.onnx.export(model.module, model.example_inputs, str(path), dynamo=False, **kwargs)
        except Exception as script_error:
            raise ConversionError(
                f"torch.onnx export failed: dynamo: {type(dynamo_error).__name__}; "
                f"torchscript: {first_line(script_error)}"
            ) from script_error
        return "torch.onnx torchscript", notes


class OnnxConverter(Converter):
    format = "onnx"

    def _fp32(self, model: LoadedModel, opset: int, ctx: ConversionContext) -> tuple[Path, str, list[str]]:
        """The fp32 export every ONNX recipe starts from, made once per model and process: its path, the
        exporter, and what the trace froze."""
        key = f"onnx-fp32-opset{opset}"
        if key not in ctx.scratch:
            directory = ctx.scratch_dir("bench-onnx-")
            info = decoder_info(model)
            if info is not None:
                from converters.onnx.decoder import export_decoder

                written, frozen = export_decoder(model, info, directory / "model.onnx", opset), []
            else:
                written, frozen = export_fp32(model, directory / "model.onnx", opset)
            ctx.scratch[key] = (directory / "model.onnx", written, frozen)
        return ctx.scratch[key]

    def convert(self, model: LoadedModel, variant: Variant, out_dir: Path, ctx: ConversionContext) -> Converted:
        recipe = variant.recipe
        opset = int(recipe.get("opset", 18))
        source, path, frozen = self._fp32(model, opset, ctx)
        target = out_dir / "model.onnx"
        quant = recipe.get("quant")
        if quant is None:
            for file in source.parent.glob("model.onnx*"):
                shutil.copy2(file, out_dir / file.name)
        elif quant == "fp16":
            onnx_quant.to_fp16(source, target)
        elif quant == "int8-dynamic":
            onnx_quant.int8_dynamic(source, target, source.parent)
        elif quant == "int8-static":
            onnx_quant.int8_static(
                source, target, source.parent, model.input_names, ctx.calibration, recipe["per_channel"]
            )
        elif quant == "matmul-4bit":
            onnx_quant.matmul_4bit(source, target, recipe["block_size"], recipe["min_matmul_share_of_compute"])
        else:
            raise ConversionError(f"unknown ONNX recipe quant={quant!r}")
        notes = {NOTE_KEY: frozen} if frozen else {}
        return Converted("model.onnx", path if quant is None else f"{path} + {quant}", opset=opset, notes=notes)

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
