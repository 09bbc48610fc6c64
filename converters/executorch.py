"""ExecuTorch variants: `torch.export` -> edge dialect -> one delegate (XNNPACK, Core ML, MPS) -> `.pte`.

The delegate decides where ops run; what it did not take runs on ExecuTorch's portable CPU kernels. The
split (delegated vs not, per op type) is read from ExecuTorch's own delegation info at export and kept
in `delegation.json` beside the program: the artifact's notes, and the backend's placement.

A decoder (the zoo's decoder protocol) is exported with a static KV cache: the Core ML converter's stateful
wrapper (`converters.coreml.decoder.stateful_wrapper`), whose two cache buffers of `max_context` positions
the program mutates in place, with inputs `tokens` (1 x T) and `positions` (1 x P+T, whose length alone says
where the new tokens go) and dynamic T and P+T, so one program prefills and decodes. ExecuTorch plans the
buffers into the loaded method's memory, where they persist from one execution to the next: the runtime
keeps the cache, as ExecuTorch's own Llama runner does, and nothing of size 0 is ever fed to it (the
functional cache's empty prefill past is what XNNPACK's tensor check refused). Under the Core ML delegate the
buffers become Core ML state (iOS18, macOS 15). The int8 recipe quantizes a decoder's activations
dynamically (per token, at run time) with int8 per-channel weights: XNNPACKQuantizer's dynamic
configuration, ExecuTorch's `xnnpack_dynamic` for LLMs; static activation ranges calibrated on a few rows
do not hold across prompt lengths and cache fills.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from converters.base import ConversionContext, Converted, Converter, VariantSkipped
from converters.cache import FORMAT_PACKAGES, package_versions
from profiles.catalog import Variant
from profiles.errors import ConversionError, first_line
from profiles.zoo import DecoderInfo, LoadedModel, decoder_info

ET_MISSING = "executorch is not installed (pip install 'ondevice-bench[executorch]')"
DELEGATION_FILE = "delegation.json"
DELEGATE_IDS = {"xnnpack": "XnnpackBackend", "coreml": "CoreMLBackend", "mps": "MPSBackend"}
DECODER_INPUTS = ["tokens", "positions"]  # a decoder program's inputs; the cache is its mutable buffers
INPLACE_PASS = "common::canonicalize_inplace_pattern"  # fails on the state update (converters.coreml.decoder)


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null: ExecuTorch's native code (cpuinfo) and torchao's import write
    there directly, which Python's own redirection cannot catch."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_exir() -> Any:
    """`executorch.exir`, quietly, or a skip naming the extra to install."""
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        with quiet_stderr():
            import executorch.exir as exir
    except ImportError as exc:
        raise VariantSkipped(ET_MISSING) from exc
    return exir


def standard_strides(tensors: tuple[Any, ...]) -> tuple[Any, ...]:
    """Example inputs in row-major strides. A (1, 1, H, W) tensor made from a permuted array also reads as
    channels-last; `torch.export` then records that dim order and the `.pte` rejects row-major inputs
    at run time (XNNPACK: 'Propagating input shapes failed')."""
    import torch

    return tuple(t.clone(memory_format=torch.contiguous_format) for t in tensors)


def explicit_pool_strides(exported: Any) -> None:
    """Write `max_pool2d`'s default stride (= kernel size) into the graph. The Core ML delegate keeps the op
    undecomposed and coremltools 9.0 refuses it with fewer than three arguments ('got 2 input(s), expected
    minimum 3'); the explicit form computes the same thing."""
    import torch

    changed = False
    for node in exported.graph_module.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.max_pool2d.default and len(node.args) == 2:
            node.args = (*node.args, node.args[1])
            changed = True
    if changed:
        exported.graph_module.recompile()


def quantize_int8(exported: Any, examples: tuple[Any, ...], calibration: tuple[Any, ...], per_channel: bool) -> Any:
    """PT2E static int8 with the XNNPACK quantizer, observers fed the calibration rows one at a time."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calibration:
        raise VariantSkipped("no calibration inputs (convert.calibration_samples must be >= 1)")
    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    prepared = prepare_pt2e(exported.module(), quantizer)
    for i in range(len(calibration[0])):
        prepared(*(torch.from_numpy(x[i : i + 1]).clone(memory_format=torch.contiguous_format) for x in calibration))
    return torch.export.export(convert_pt2e(prepared), examples)


def quantize_dynamic_int8(exported: Any, examples: tuple[Any, ...], dynamic_shapes: Any) -> Any:
    """PT2E int8 with dynamic per-token activations and per-channel weights (XNNPACKQuantizer's dynamic
    configuration): no calibration, and every prompt length and cache fill quantized by its own range."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    prepared = prepare_pt2e(exported.module(), quantizer)
    prepared(*examples)
    return torch.export.export(convert_pt2e(prepared), examples, dynamic_shapes=dynamic_shapes)


def static_cache_export(model: LoadedModel, info: DecoderInfo) -> tuple[Any, tuple[Any, ...], Any]:
    """(exported program, example inputs, dynamic shapes) of a decoder with its cache as mutable buffers
    (module docstring): the example prefills the factory's tokens after a 3-position past."""
    import torch

    from converters.coreml.decoder import explicit_rms_norm_eps, stateful_wrapper

    tokens = torch.export.Dim("tokens", min=1, max=info.max_context - 1)
    end = torch.export.Dim("positions", min=1, max=info.max_context)
    prompt = model.example_inputs[0].clone(memory_format=torch.contiguous_format)
    examples = (prompt, torch.zeros(1, prompt.shape[1] + 3))
    dynamic_shapes = ({1: tokens}, {1: end})
    exported = torch.export.export(stateful_wrapper(model.module, info), examples, dynamic_shapes=dynamic_shapes)
    explicit_rms_norm_eps(exported)  # the Core ML delegate keeps rms_norm whole (converters.coreml.decoder)
    return exported, examples, dynamic_shapes


def static_cache_notes(info: DecoderInfo, delegate: str) -> dict[str, Any]:
    """What the backend reads off a decoder program: its inputs and where and how big its cache is."""
    cache_bytes = 2 * info.layers * info.heads * info.max_context * info.head_dim
    if delegate == "coreml":
        return {
            "inputs": DECODER_INPUTS,
            "kv_cache": "Core ML state, fp16, allocated at max_context",
            "state_bytes": cache_bytes * 2,
        }
    return {
        "inputs": DECODER_INPUTS,
        "kv_cache": "ExecuTorch mutable buffers, fp32, planned at max_context",
        "state_bytes": cache_bytes * 4,
    }


def partitioner(recipe: dict[str, Any], stateful: bool = False) -> Any:
    """The recipe's delegate. `stateful`: a decoder's cache buffers go into the Core ML delegate as state
    (iOS18, whatever the recipe's target), converted without the in-place pass that fails on them."""
    delegate = recipe["delegate"]
    if delegate == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return XnnpackPartitioner()
    if delegate == "coreml":
        from converters.coreml.convert import import_coremltools

        ct = import_coremltools()
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        precision = ct.precision.FLOAT16 if recipe["precision"] == "fp16" else ct.precision.FLOAT32
        if not stateful:
            specs = CoreMLBackend.generate_compile_specs(
                compute_precision=precision, minimum_deployment_target=getattr(ct.target, recipe["target"])
            )
            return CoreMLPartitioner(compile_specs=specs)
        passes = [name for name in ct.PassPipeline.DEFAULT.passes if name != INPLACE_PASS]
        specs = CoreMLBackend.generate_compile_specs(
            compute_precision=precision, minimum_deployment_target=ct.target.iOS18, pass_names=passes
        )
        return CoreMLPartitioner(compile_specs=specs, take_over_mutable_buffer=True)
    if delegate == "mps":
        try:
            from executorch.backends.apple.mps.partition import MPSPartitioner  # type: ignore[import-not-found]
        except ImportError as exc:
            raise VariantSkipped(
                f"executorch {metadata.version('executorch')} has no MPS delegate (deprecated in 1.2, removed "
                "in 1.5: pytorch/executorch#22181); use et-coreml-fp16 for the GPU and Neural Engine"
            ) from exc
        return MPSPartitioner(compile_specs=[])
    raise ConversionError(f"unknown ExecuTorch delegate {delegate!r}")


def delegation(edge: Any) -> dict[str, Any]:
    """ExecuTorch's delegation info of the lowered graph: nodes inside a delegate and outside, per op type."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge.exported_program().graph_module)
    return {
        "delegated_subgraphs": info.num_delegated_subgraphs,
        "delegated_nodes": info.num_delegated_nodes,
        "non_delegated_nodes": info.num_non_delegated_nodes,
        "by_operator": {
            op: {"delegated": b.delegated, "non_delegated": b.non_delegated}
            for op, b in sorted(info.delegation_by_operator.items())
        },
    }


def weight_bytes(exported: Any) -> dict[str, int]:
    """Bytes of the parameters, buffers and constants the lowered graph uses, by dtype (int8 after
    quantization: the float originals stay in the state dict, unused). Read before lowering: the Core ML
    partitioner takes the constants it delegates out of the program it is given (a non-persistent buffer
    then has a placeholder and no tensor: KeyError)."""
    signature = exported.graph_signature
    owners = {
        **signature.inputs_to_parameters,
        **signature.inputs_to_buffers,
        **signature.inputs_to_lifted_tensor_constants,
    }
    tensors = {**exported.state_dict, **exported.constants}
    totals: Counter[str] = Counter()
    for node in exported.graph.nodes:
        if node.op == "placeholder" and node.users and node.name in owners:
            tensor = tensors[owners[node.name]]
            totals[str(tensor.dtype).removeprefix("torch.")] += tensor.numel() * tensor.element_size()
    return dict(totals)


class ExecuTorchConverter(Converter):
    format = "executorch"

    def _exported(self, model: LoadedModel, ctx: ConversionContext) -> tuple[Any, tuple[Any, ...], Any]:
        """One `torch.export` per model and process, shared by the ExecuTorch recipes (each lowers a copy):
        (program, example inputs, dynamic shapes or None)."""
        import torch

        if "et-exported" not in ctx.scratch:
            info = decoder_info(model)
            try:
                if info is not None:
                    exported, examples, dynamic = static_cache_export(model, info)
                else:
                    examples, dynamic = standard_strides(tuple(model.example_inputs)), None
                    exported = torch.export.export(model.module, examples)
            except Exception as exc:
                raise ConversionError(f"torch.export failed: {first_line(exc)}") from exc
            explicit_pool_strides(exported)
            ctx.scratch["et-exported"] = (exported, examples, dynamic)
        exported, examples, dynamic = ctx.scratch["et-exported"]
        return copy.deepcopy(exported), examples, dynamic

    def convert(self, model: LoadedModel, variant: Variant, out_dir: Path, ctx: ConversionContext) -> Converted:
        """Without autograd: lowering a program that mutates its buffers in place fails under it ('a leaf
        Variable that requires grad is being used in an in-place operation')."""
        import torch

        with warnings.catch_warnings(), torch.no_grad():  # torch's pytree deprecations, once per node copied
            warnings.simplefilter("ignore", FutureWarning)
            return self._convert(model, variant, out_dir, ctx)

    def _convert(self, model: LoadedModel, variant: Variant, out_dir: Path, ctx: ConversionContext) -> Converted:
        recipe = variant.recipe
        exir = import_exir()
        info = decoder_info(model)
        chosen = partitioner(recipe, stateful=info is not None)
        exported, examples, dynamic = self._exported(model, ctx)
        path = "torch.export" if info is None else "torch.export, static KV cache as mutable buffers"
        if recipe.get("quant") == "int8-static" and info is not None:
            exported = quantize_dynamic_int8(exported, examples, dynamic)
            path += " + pt2e int8, dynamic activations (XNNPACKQuantizer)"
        elif recipe.get("quant") == "int8-static":
            exported = quantize_int8(exported, examples, ctx.calibration, recipe["per_channel"])
            path += " + pt2e int8 (XNNPACKQuantizer)"
        weights = weight_bytes(exported)
        try:
            edge = exir.to_edge_transform_and_lower(exported, partitioner=[chosen])
        except Exception as exc:
            raise ConversionError(f"lowering to {DELEGATE_IDS[recipe['delegate']]} failed: {first_line(exc)}") from exc
        split = delegation(edge)
        program = edge.to_executorch()
        (out_dir / "model.pte").write_bytes(program.buffer)
        notes = {
            "delegate": DELEGATE_IDS[recipe["delegate"]],
            "delegation": split,
            "weight_bytes_by_dtype": weights,
            "versions": package_versions(FORMAT_PACKAGES["executorch"]),
        }
        if info is not None:
            notes["decoder"] = static_cache_notes(info, recipe["delegate"])
        (out_dir / DELEGATION_FILE).write_text(json.dumps(notes, indent=1, sort_keys=True))
        return Converted(
            "model.pte",
            f"{path} + to_edge_transform_and_lower({type(chosen).__name__})",
            deployment_target="iOS18" if info is not None and recipe["delegate"] == "coreml" else recipe.get("target"),
            notes=notes,
        )

    def inspect(self, main_file: Path) -> tuple[dict[str, int], dict[str, int]]:
        """Op types of the lowered graph (inside and outside the delegate), from the notes written beside it."""
        notes = json.loads((main_file.parent / DELEGATION_FILE).read_text())
        ops = {
            op: counts["delegated"] + counts["non_delegated"]
            for op, counts in notes["delegation"]["by_operator"].items()
        }
        return ops, notes["weight_bytes_by_dtype"]
