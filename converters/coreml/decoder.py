"""Core ML export of a decoder (the zoo's decoder protocol) with its KV cache as model state (iOS18).

The decoder's functional cache becomes two state tensors of `max_context` positions, read and written in
place by `read_state`/`slice_update`/`write_state`, so a Mac app keeps the cache inside Core ML between
predictions (`state = model.make_state(); model.predict(inputs, state)`, macOS 15+). Inputs: `tokens`
(1 x T, int32) and `positions` (1 x P+T), whose length alone says where the new tokens go (the values are
not read), as Apple's Mistral example passes a causal mask. Conversion goes through `torch.export` with
dynamic token and position counts; coremltools 9's `common::canonicalize_inplace_pattern` pass fails on
this graph (KeyError on a `coreml_update_state` op) and is left out, which keeps the states as declared.
`nn.RMSNorm` with its default eps (None) exports as `aten.rms_norm` without eps, which coremltools 9.0's
torch frontend refuses ('got 3 input(s), expected [4]'): `explicit_rms_norm_eps` writes torch's own default in.
"""

from __future__ import annotations

from typing import Any

from converters.base import ConversionContext
from profiles.zoo import DecoderInfo, LoadedModel

STATE_NAMES = ("key_cache", "value_cache")


def stateful_wrapper(module: Any, info: DecoderInfo) -> Any:
    import torch

    class StatefulDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = module
            shape = (1, info.layers, info.heads, info.max_context, info.head_dim)
            self.register_buffer("key_cache", torch.zeros(shape))
            self.register_buffer("value_cache", torch.zeros(shape))

        def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            end = positions.shape[-1]
            past = end - tokens.shape[1]
            past_keys, past_values = self.key_cache[:, :, :, :past], self.value_cache[:, :, :, :past]
            logits, keys, values = self.decoder(tokens, past_keys, past_values)
            self.key_cache[:, :, :, past:end] = keys[:, :, :, past:]
            self.value_cache[:, :, :, past:end] = values[:, :, :, past:]
            return logits

    return StatefulDecoder().eval()


def explicit_rms_norm_eps(exported: Any) -> None:
    """Write eps into every `aten.rms_norm` that has none: torch then uses `torch.finfo(input dtype).eps`,
    which is what is written, so the graph computes the same thing in a form coremltools 9.0 accepts."""
    import torch

    changed = False
    for node in exported.graph_module.graph.nodes:
        if node.op != "call_function" or node.target != torch.ops.aten.rms_norm.default:
            continue
        args = list(node.args) + [None] * (4 - len(node.args))
        eps = node.kwargs.get("eps", args[3])
        if eps is None:
            dtype = node.args[0].meta["val"].dtype
            node.args = (args[0], args[1], node.kwargs.get("weight", args[2]), torch.finfo(dtype).eps)
            node.kwargs = {}
            changed = True
    if changed:
        exported.graph_module.recompile()


def convert_stateful(
    ct: Any,
    model: LoadedModel,
    info: DecoderInfo,
    precision: Any,
    weights: tuple[str | None, Any],
    ctx: ConversionContext,
) -> Any:
    """An iOS18 mlprogram with the cache as state; the export is shared by every Core ML recipe of a process.
    Weight compression (`weights`: kind and config, from `converters.coreml.convert.weight_config`) runs as a pass of
    the conversion: `optimize.coreml`'s functions re-run the default pipeline on the converted model, whose
    in-place pass then fails the same way."""
    import torch

    if "decoder-exported" not in ctx.scratch:
        wrapper = stateful_wrapper(model.module, info)
        tokens = torch.export.Dim("tokens", min=1, max=info.max_context - 1)
        end = torch.export.Dim("positions", min=1, max=info.max_context)
        example = (model.example_inputs[0], torch.zeros(1, model.example_inputs[0].shape[1] + 3))
        exported = torch.export.export(wrapper, example, dynamic_shapes=({1: tokens}, {1: end}))
        exported = exported.run_decompositions({})
        explicit_rms_norm_eps(exported)
        ctx.scratch["decoder-exported"] = exported
    pipeline = ct.PassPipeline.DEFAULT
    pipeline.remove_passes(["common::canonicalize_inplace_pattern"])
    kind, config = weights
    if kind is not None:
        name = {"linear": "compression::linear_quantize_weights", "palettize": "compression::palettize_weights"}[kind]
        pipeline.append_pass(name)
        pipeline.set_options(name, {"config": config})
    return ct.convert(
        ctx.scratch["decoder-exported"],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS18,
        compute_precision=precision,
        pass_pipeline=pipeline,
    )


STATE_DTYPE_BYTES = {"FLOAT16": 2, "FLOAT32": 4, "INT32": 4, "DOUBLE": 8, "INT8": 1}


def state_bytes(spec: Any) -> int | None:
    """The bytes of a Core ML model's declared state (`spec.description.state`), None where it has none:
    Core ML allocates each state at its declared shape (here the full `max_context`) when `make_state()`
    runs, whatever context is used."""
    from coremltools.proto import FeatureTypes_pb2

    names = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    total = 0
    for feature in spec.description.state:
        array = feature.type.stateType.arrayType
        count = 1
        for dim in array.shape:
            count *= dim
        total += count * STATE_DTYPE_BYTES[names.Name(array.dataType)]
    return total if spec.description.state else None
