"""Core ML variants: PyTorch -> mlprogram `.mlpackage`, then coremltools' own weight compression.

Conversion tries `torch.export` first (the path coremltools 9 converts attention models with) and
falls back to `torch.jit.trace`; the path used is recorded. Activation calibration (W8A8) runs Core ML
predict, which exists only on macOS: elsewhere that variant is skipped with the reason.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from converters.base import ConversionContext, Converted, Converter, VariantSkipped
from converters.coreml.inputs import cast_to_spec, spec_input_dtypes
from converters.tracing import NOTE_KEY, tracer_notes
from profiles.catalog import Variant
from profiles.errors import ConversionError, first_line
from profiles.zoo import LoadedModel, decoder_info

log = logging.getLogger(__name__)

W8A8_NEEDS_MACOS = "activation calibration runs Core ML predict, which needs macOS"
W8A8_STATEFUL = (
    "W8A8 is not built for a stateful decoder: its conversion pipeline compresses weights only, and "
    "activation quantization reconverts with the default pipeline, which fails on the in-place cache "
    "(a weight-only build would carry the W8A8 label); use coreml-w8 for int8 weights"
)
CALIBRATION_ROWS = 32


def import_coremltools() -> Any:
    """coremltools, with its import-time noise on Linux (no native runtime) kept out of the user's view."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    try:
        import coremltools
    except ImportError as exc:
        raise VariantSkipped("coremltools is not installed (pip install 'ondevice-bench[coreml]')") from exc
    return coremltools


def trace_input_type(ct: Any, name: str, tensor: Any) -> Any:
    """The TensorType for one traced input: integer tensors (token ids) as int32, which predict takes and
    which holds every id; without a dtype Core ML makes them FLOAT16, exact only up to 2048."""
    import numpy as np

    dtype = None if tensor.is_floating_point() else np.int32
    return ct.TensorType(name=name, shape=tuple(tensor.shape), dtype=dtype)


def convert_exported(ct: Any, model: LoadedModel, common: dict[str, Any], ctx: ConversionContext) -> Any:
    """Exported and decomposed once per model and process, then shared by every Core ML recipe
    (`ct.convert` leaves the program unchanged: converting it twice gives identical specs, checked)."""
    import torch

    if "decomposed" not in ctx.scratch:
        exported = torch.export.export(model.module, tuple(model.example_inputs))
        ctx.scratch["decomposed"] = exported.run_decompositions({})
    return ct.convert(ctx.scratch["decomposed"], **common)


def convert_traced(ct: Any, model: LoadedModel, common: dict[str, Any]) -> Any:
    import torch

    traced = torch.jit.trace(model.module, model.example_inputs)
    inputs = [trace_input_type(ct, n, t) for n, t in zip(model.input_names, model.example_inputs, strict=True)]
    return ct.convert(traced, inputs=inputs, **common)


def _convert(
    ct: Any, model: LoadedModel, precision: Any, target: Any, ctx: ConversionContext
) -> tuple[Any, str, list[str]]:
    common = {"convert_to": "mlprogram", "minimum_deployment_target": target, "compute_precision": precision}
    try:
        return convert_exported(ct, model, common, ctx), "torch.export", []
    except Exception as export_error:
        log.warning("coremltools torch.export path failed (%s); trying torch.jit.trace", export_error)
        try:
            with tracer_notes() as frozen:  # what the trace froze (converters.tracing)
                mlmodel = convert_traced(ct, model, common)
            return mlmodel, "torch.jit.trace", frozen
        except Exception as trace_error:
            raise ConversionError(
                f"coremltools failed on both paths: torch.export: {first_line(export_error)}; "
                f"torch.jit.trace: {first_line(trace_error)}"
            ) from trace_error


def _compress(ct: Any, mlmodel: Any, recipe: dict[str, Any], ctx: ConversionContext) -> Any:
    cto = ct.optimize.coreml
    if recipe.get("activations"):
        spec = mlmodel.get_spec()
        names = [i.name for i in spec.description.input]
        dtypes = spec_input_dtypes(spec)
        rows = min(CALIBRATION_ROWS, len(ctx.calibration[0]))
        samples = [
            cast_to_spec({n: x[i : i + 1] for n, x in zip(names, ctx.calibration, strict=True)}, dtypes)
            for i in range(rows)
        ]
        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"))
        mlmodel = cto.linear_quantize_activations(mlmodel, config, samples)
    kind, config = weight_config(ct, recipe)
    if kind == "linear":
        return cto.linear_quantize_weights(mlmodel, config)
    if kind == "palettize":
        return cto.palettize_weights(mlmodel, config)
    return mlmodel


def weight_config(ct: Any, recipe: dict[str, Any]) -> tuple[str | None, Any]:
    """The recipe's weight compression: ("linear" | "palettize" | None, its OptimizationConfig)."""
    cto = ct.optimize.coreml
    if recipe.get("weights") == "linear":
        op_config = cto.OpLinearQuantizerConfig(
            mode="linear_symmetric",
            dtype=recipe["dtype"],
            granularity=recipe["granularity"],
            block_size=recipe.get("block_size", 32),
        )
        return "linear", cto.OptimizationConfig(global_config=op_config)
    if recipe.get("weights") == "palettize":
        op_config = cto.OpPalettizerConfig(mode="kmeans", nbits=recipe["nbits"], granularity="per_tensor")
        return "palettize", cto.OptimizationConfig(global_config=op_config)
    return None, None


def iter_operations(spec: Any) -> Iterator[Any]:
    """Every MIL operation of every function, nested blocks included, read from the spec alone."""

    def walk(block: Any) -> Iterator[Any]:
        for op in block.operations:
            yield op
            for inner in op.blocks:
                yield from walk(inner)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            yield from walk(block)


def _dtype_bits(name: str) -> int | None:
    if name == "BOOL":
        return 8
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else None


class CoreMLConverter(Converter):
    format = "coreml"

    def convert(self, model: LoadedModel, variant: Variant, out_dir: Path, ctx: ConversionContext) -> Converted:
        recipe = variant.recipe
        info = decoder_info(model)
        if recipe.get("activations") and info is not None:
            raise VariantSkipped(W8A8_STATEFUL)
        if recipe.get("activations") and sys.platform != "darwin":
            raise VariantSkipped(W8A8_NEEDS_MACOS)
        ct = import_coremltools()
        precision = ct.precision.FLOAT32 if recipe["precision"] == "fp32" else ct.precision.FLOAT16
        target = recipe["target"]
        if info is not None:  # the KV cache as model state (iOS18), compressed inside the conversion
            from converters.coreml.decoder import convert_stateful

            try:
                mlmodel = convert_stateful(ct, model, info, precision, weight_config(ct, recipe), ctx)
            except Exception as exc:
                raise ConversionError(f"coremltools failed on the stateful decoder: {first_line(exc)}") from exc
            path, target, frozen = "torch.export, KV cache as state", "iOS18", []
        else:
            mlmodel, path, frozen = _convert(ct, model, precision, getattr(ct.target, target), ctx)
            mlmodel = _compress(ct, mlmodel, recipe, ctx)
        mlmodel.save(str(out_dir / "model.mlpackage"))
        notes = {NOTE_KEY: frozen} if frozen else {}
        return Converted("model.mlpackage", path, deployment_target=target, notes=notes)

    def inspect(self, main_file: Path) -> tuple[dict[str, int], dict[str, int]]:
        ct = import_coremltools()
        from coremltools.proto import MIL_pb2

        spec = ct.models.MLModel(str(main_file), skip_model_load=True).get_spec()
        ops: Counter[str] = Counter()
        weights: Counter[str] = Counter()
        for op in iter_operations(spec):
            ops[op.type] += 1
            if op.type != "const" and not op.type.startswith("constexpr_"):
                continue
            inline = [arg.value for binding in op.inputs.values() for arg in binding.arguments if arg.HasField("value")]
            for value in [*op.attributes.values(), *inline]:  # iOS18 ops carry their weights as inline inputs
                if not value.type.HasField("tensorType"):
                    continue
                tensor = value.type.tensorType
                name = MIL_pb2.DataType.Name(tensor.dataType)
                bits = _dtype_bits(name)
                if bits is None:
                    continue
                count = 1
                for dim in tensor.dimensions:
                    count *= dim.constant.size
                weights[name.lower()] += count * bits // 8
        return dict(ops), dict(weights)
