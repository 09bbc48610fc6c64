"""ONNX export of a decoder (the zoo's decoder protocol) as one graph with the KV cache in and out.

One graph, not two: `(tokens, past_keys, past_values) -> (logits, keys, values)` with the token count and
the past length dynamic serves prefill (an empty past) and decode (one token). Two graphs (prefill, decode)
would store every weight twice, or need shared external data that the quantization recipes rewrite one graph
at a time; with one graph each recipe (fp16, int8 dynamic and static, 4-bit MatMul) applies once and prefill
and decode run the same quantized weights. What one graph gives up: ONNX Runtime plans for dynamic shapes
(no shape-specialised kernels), and the cache grows by a Concat each step (a copy of the past), the layout
Hugging Face Optimum exports too.
"""

from __future__ import annotations

from pathlib import Path

from profiles.errors import ConversionError, first_line
from profiles.zoo import DECODER_INPUT_NAMES, DECODER_OUTPUT_NAMES, DecoderInfo, LoadedModel


def export_decoder(model: LoadedModel, info: DecoderInfo, path: Path, opset: int) -> str:
    """Export with dynamic token and past lengths (the past may be 0: the prefill); returns the exporter."""
    import torch

    tokens = torch.export.Dim("tokens", min=1, max=info.max_context)
    past = torch.export.Dim("past", min=0, max=info.max_context - 1)
    try:
        torch.onnx.export(
            model.module,
            model.example_inputs,
            str(path),
            dynamo=True,
            input_names=DECODER_INPUT_NAMES,
            output_names=DECODER_OUTPUT_NAMES,
            opset_version=opset,
            dynamic_shapes=({1: tokens}, {3: past}, {3: past}),
            verbose=False,
        )
    except Exception as exc:
        raise ConversionError(
            f"torch.onnx export of the decoder with a dynamic KV cache failed: {first_line(exc)}"
        ) from exc
    return "torch.onnx dynamo (KV cache in and out, dynamic lengths)"
