"""Unfused adapter recipes: the LoRA branch stays in the graph, and the graph still computes the adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.base import ConversionContext
from converters.build import recipe_model
from converters.onnx.export import OnnxConverter
from harness.backends.base import LoadRequest
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.generation.measure import greedy, session_step, torch_step
from profiles.catalog import VARIANTS
from profiles.zoo import load_model, resolve_model

TOKENS = 64


def _convert(loaded, name: str, tmp: Path) -> Path:
    out = tmp / name
    out.mkdir()
    with ConversionContext(scratch_root=tmp) as ctx:
        source, context = recipe_model(loaded, VARIANTS[name], ctx)
        OnnxConverter().convert(source, VARIANTS[name], out, context)
    return out / "model.onnx"


def test_an_onnx_unfused_adapter_reproduces_its_torch_references_greedy_64_tokens(tmp_path: Path) -> None:
    """Acceptance: the torch reference is the adapter model itself (base + LoRA, merged in eager torch);
    the ONNX graph keeps the low-rank branch (two MatMuls more per adapted Linear) and must continue
    every held-out prompt of its domain with exactly the same 64 tokens in fp32."""
    import onnx

    spec = resolve_model("tiny_decoder+python_source")
    loaded = load_model(spec)
    unfused = _convert(loaded, "onnx-lora-unfused", tmp_path)
    fused = _convert(loaded, "onnx-fp32", tmp_path)

    def matmuls(path: Path) -> int:
        return sum(node.op_type == "MatMul" for node in onnx.load(str(path), load_external_data=False).graph.node)

    assert matmuls(unfused) == matmuls(fused) + 2 * len(loaded.peft.targeted_module_names)

    backend = OnnxRuntimeBackend()
    request = LoadRequest(str(unfused), "cpu", 1, spec.ref)
    backend.prepare(request)
    step = session_step(backend.load(request))
    reference = torch_step(loaded.module)
    empty = np.zeros((1, 4, 4, 0, 32), np.float32)
    prompts = spec.dataset(4, "parity").inputs[0][:, :32]
    for prompt in prompts:
        expected = greedy(reference, prompt, TOKENS, empty)
        assert np.array_equal(greedy(step, prompt, TOKENS, empty), expected)
