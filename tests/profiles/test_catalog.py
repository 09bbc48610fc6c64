"""Every variant of the catalog is a real artifact made by the format's own tools."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from converters.base import ConversionContext, VariantSkipped
from converters.build import build_artifact
from converters.cache import ArtifactCache
from converters.coreml.convert import W8A8_NEEDS_MACOS, iter_operations
from converters.fingerprint import fingerprint_model
from harness.orchestrate.prepare import model_inputs
from profiles.catalog import VARIANTS
from profiles.zoo import load_model, resolve_model

COMPRESSED_OPS = {
    "coreml-w8": "constexpr_affine_dequantize",
    "coreml-w4": "constexpr_blockwise_shift_scale",
    "coreml-pal6": "constexpr_lut_to_dense",
    "coreml-pal4": "constexpr_lut_to_dense",
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):
    spec = resolve_model("digits_cnn")
    model = load_model(spec)
    calibration, _, _ = model_inputs(spec, model, 16, "calibration", 0)
    ctx = ConversionContext(calibration=tuple(calibration), scratch_root=tmp_path_factory.mktemp("scratch"))
    cache = ArtifactCache(tmp_path_factory.mktemp("artifacts"))
    return spec, model, fingerprint_model(model), ctx, cache


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.startswith("coreml-") and v != "coreml-w8a8"])
def test_coreml_variants_have_their_compressed_ops(digits, variant: str) -> None:
    import coremltools as ct

    _, model, fingerprint, ctx, cache = digits
    info = build_artifact(model, fingerprint, VARIANTS[variant], ctx, cache)
    assert info["path"].endswith("model.mlpackage") and Path(info["path"]).is_dir()
    assert info["deployment_target"] == VARIANTS[variant].recipe["target"]
    assert info["converter_path"] in ("torch.export", "torch.jit.trace")
    spec = ct.models.MLModel(info["path"], skip_model_load=True).get_spec()
    ops = {op.type for op in iter_operations(spec)}
    assert "conv" in ops and "linear" in ops
    assert info["op_histogram"]["conv"] == 2
    if variant in COMPRESSED_OPS:
        assert COMPRESSED_OPS[variant] in ops
    else:
        assert not any(op.startswith("constexpr_") for op in ops)
    weights = info["weight_bytes_by_dtype"]
    expected_dtype = {"coreml-fp32": "float32", "coreml-fp16": "float16", "coreml-w8": "int8", "coreml-w4": "int4"}
    if variant in expected_dtype:
        assert max(weights, key=weights.get) == expected_dtype[variant]


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS W8A8 calibrates for real")
def test_coreml_w8a8_is_skipped_off_macos_with_the_reason(digits) -> None:
    _, model, fingerprint, ctx, cache = digits
    with pytest.raises(VariantSkipped, match=W8A8_NEEDS_MACOS):
        build_artifact(model, fingerprint, VARIANTS["coreml-w8a8"], ctx, cache)


@pytest.mark.slow
def test_sizes_follow_the_recipes(tmp_path: Path) -> None:
    """On the ResNet-18-like model (weights dominate), each variant's size is what its recipe implies."""
    spec = resolve_model("resnet18")
    model = load_model(spec)
    fingerprint = fingerprint_model(model)
    cache = ArtifactCache()
    size = {}
    for name in ["coreml-fp32", "coreml-fp16", "coreml-w8", "coreml-w4", "coreml-pal4", "onnx-fp32", "onnx-fp16"]:
        size[name] = build_artifact(
            model, fingerprint, VARIANTS[name], ConversionContext(scratch_root=tmp_path), cache
        )["size_bytes"]
    assert size["coreml-fp16"] / size["coreml-fp32"] == pytest.approx(1 / 2, rel=0.02)
    assert size["coreml-w8"] / size["coreml-fp32"] == pytest.approx(1 / 4, rel=0.03)
    assert size["coreml-w4"] / size["coreml-fp32"] == pytest.approx(1 / 8, rel=0.08)
    assert size["coreml-pal4"] / size["coreml-fp32"] == pytest.approx(1 / 8, rel=0.06)
    assert size["onnx-fp16"] / size["onnx-fp32"] == pytest.approx(1 / 2, rel=0.02)


def _ort_outputs(path: str, inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": inputs[i : i + 1]})[0] for i in range(len(inputs))])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize(
    ("variant", "max_rel", "min_cosine", "marker_op"),
    [
        ("onnx-fp16", 1e-3, 0.99999, "Cast"),
        ("onnx-int8-dynamic", 0.05, 0.999, "DynamicQuantizeLinear"),
        ("onnx-int8-static", 0.3, 0.995, "QuantizeLinear"),
    ],
)
def test_onnx_variants_run_and_stay_close_to_fp32(
    digits, variant: str, max_rel: float, min_cosine: float, marker_op: str
) -> None:
    """Errors relative to the largest reference logit; int8 static clips a few outlier activations."""
    spec, model, fingerprint, ctx, cache = digits
    inputs, _, _ = model_inputs(spec, model, 64, "parity", 0)
    reference = _ort_outputs(build_artifact(model, fingerprint, VARIANTS["onnx-fp32"], ctx, cache)["path"], inputs[0])
    with torch.inference_mode():
        assert np.allclose(reference, model.module(torch.from_numpy(inputs[0])).numpy(), atol=1e-4)
    info = build_artifact(model, fingerprint, VARIANTS[variant], ctx, cache)
    assert marker_op in info["op_histogram"]
    outputs = _ort_outputs(info["path"], inputs[0])
    assert np.abs(outputs - reference).max() / np.abs(reference).max() < max_rel
    assert _cosine(outputs, reference) > min_cosine
    assert np.mean(outputs.argmax(1) == reference.argmax(1)) > 0.95


def test_onnx_w4_quantizes_matmul_models_and_skips_conv_models(digits, tmp_path: Path) -> None:
    _, model, fingerprint, ctx, cache = digits
    with pytest.raises(VariantSkipped, match=r"only 0% of the multiplied weights feed MatMul"):
        build_artifact(model, fingerprint, VARIANTS["onnx-w4"], ctx, cache)
    with pytest.raises(VariantSkipped, match=r"only 0% of the multiplied weights feed MatMul"):  # now from the cache
        build_artifact(model, fingerprint, VARIANTS["onnx-w4"], ctx, cache)

    spec = resolve_model("vit_small")
    vit = load_model(spec)
    info = build_artifact(
        vit, fingerprint_model(vit), VARIANTS["onnx-w4"], ConversionContext(scratch_root=tmp_path), cache
    )
    assert info["op_histogram"]["MatMulNBits"] >= 24  # four weight MatMuls per block, six blocks
    example = vit.example_inputs[0].numpy()
    out = ort.InferenceSession(info["path"]).run(None, {"input": example})[0]
    with torch.inference_mode():
        assert _cosine(out, vit.module(vit.example_inputs[0]).numpy()) > 0.98


@pytest.mark.parametrize("variant", [n for n, v in VARIANTS.items() if n.startswith("onnx-") and not v.unfused_adapter])
def test_every_onnx_artifact_passes_the_full_checker(digits, variant: str) -> None:
    """ONNX Runtime tolerates an unsorted graph; other consumers do not (the fp16 converter appends its
    input casts at the end). onnx-w4 is checked on the ViT, digits_cnn having no MatMul weights."""
    import onnx

    _, model, fingerprint, ctx, cache = digits
    if variant == "onnx-w4":
        spec = resolve_model("vit_small")
        model = load_model(spec)
        fingerprint = fingerprint_model(model)
    info = build_artifact(model, fingerprint, VARIANTS[variant], ctx, cache)
    onnx.checker.check_model(info["path"], full_check=True)


def test_topological_sort_orders_producers_first() -> None:
    import onnx
    from onnx import TensorProto, helper

    from converters.onnx.quant import topologically_sort

    nodes = [
        helper.make_node("Relu", ["b"], ["c"], name="second"),
        helper.make_node("Neg", ["c"], ["y"], name="third"),
        helper.make_node("Abs", ["x"], ["b"], name="first"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    topologically_sort(graph)
    assert [n.name for n in graph.node] == ["first", "second", "third"]
    onnx.checker.check_model(helper.make_model(graph), full_check=True)
