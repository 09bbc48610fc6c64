from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from converters.base import ConversionContext
from converters.build import build_artifact
from converters.cache import ArtifactCache, model_fingerprint
from profiles.catalog import VARIANTS
from profiles.errors import ConversionError
from profiles.zoo import LoadedModel, load_model, resolve_model


def tiny() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()).eval(), (torch.ones(1, 4),))


def test_onnx_export_runs_and_matches_torch(tmp_path: Path) -> None:
    model = tiny()
    info = build_artifact(model, "fp", VARIANTS["onnx-fp32"], ConversionContext(), ArtifactCache(tmp_path))
    assert info["converter_path"] == "torch.onnx dynamo" and info["opset"] == 18
    assert info["size_bytes"] == sum((Path(info["path"]).parent / f).stat().st_size for f in info["files"])
    assert info["op_histogram"].get("Gemm", 0) + info["op_histogram"].get("MatMul", 0) >= 1
    assert info["weight_bytes_by_dtype"] == {"float": (4 * 8 + 8) * 4}
    out = ort.InferenceSession(info["path"]).run(None, {"input": np.ones((1, 4), np.float32)})[0]
    assert np.allclose(out, model.module(torch.ones(1, 4)).detach().numpy(), atol=1e-6)


def test_large_models_keep_external_data_together(tmp_path: Path) -> None:
    model = load_model(resolve_model("vit_small"))
    info = build_artifact(model, "vit", VARIANTS["onnx-fp32"], ConversionContext(), ArtifactCache(tmp_path))
    assert sorted(info["files"]) == ["model.onnx", "model.onnx.data"]
    assert info["size_bytes"] > 8_000_000
    session = ort.InferenceSession(info["path"])
    assert session.run(None, {"input": model.example_inputs[0].numpy()})[0].shape == (1, 1000)


def test_cache_hits_misses_and_rebuilds_corruption(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    model = tiny()
    first = build_artifact(model, "fp-a", VARIANTS["onnx-fp32"], ConversionContext(), cache)
    again = build_artifact(model, "fp-a", VARIANTS["onnx-fp32"], ConversionContext(), cache)
    assert not first["cache_hit"] and again["cache_hit"] and again["sha256"] == first["sha256"]

    other_weights = build_artifact(model, "fp-b", VARIANTS["onnx-fp32"], ConversionContext(), cache)
    assert not other_weights["cache_hit"]
    other_recipe = replace(VARIANTS["onnx-fp32"], recipe={"opset": 17})
    assert not build_artifact(model, "fp-a", other_recipe, ConversionContext(), cache)["cache_hit"]

    Path(first["path"]).write_bytes(b"corrupted")
    rebuilt = build_artifact(model, "fp-a", VARIANTS["onnx-fp32"], ConversionContext(), cache)
    assert not rebuilt["cache_hit"] and rebuilt["sha256"] == first["sha256"]


def test_fingerprint_covers_weights_and_input_spec() -> None:
    model = tiny()
    base = model_fingerprint(model, tiny)
    reshaped = LoadedModel(model.module, (torch.ones(2, 4),))
    assert model_fingerprint(reshaped, tiny) != base


def test_export_failure_is_a_conversion_error_with_both_paths(tmp_path: Path) -> None:
    class Unexportable(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.eigvals(x.reshape(2, 2)).real  # no ONNX op for either exporter

    model = LoadedModel(Unexportable().eval(), (torch.ones(1, 4),))
    with pytest.raises(ConversionError, match=r"dynamo: .*torchscript: .*'aten::linalg_eigvals'"):
        build_artifact(model, "u", VARIANTS["onnx-fp32"], ConversionContext(), ArtifactCache(tmp_path))


@pytest.mark.parametrize(
    "manifest",
    ['{"files": []}', '{"files": {}, "info": {}}', '{"files": {"model.onnx": "abc"}, "info": {"path": "x"}}', "[]"],
    ids=["files-list", "empty-info", "bad-hash", "not-an-object"],
)
def test_a_malformed_manifest_is_rebuilt(tmp_path: Path, manifest: str) -> None:
    cache = ArtifactCache(tmp_path)
    model = tiny()
    first = build_artifact(model, "fp", VARIANTS["onnx-fp32"], ConversionContext(), cache)
    (Path(first["path"]).parent / "manifest.json").write_text(manifest)
    rebuilt = build_artifact(model, "fp", VARIANTS["onnx-fp32"], ConversionContext(), cache)
    assert not rebuilt["cache_hit"] and rebuilt["sha256"] == first["sha256"]
    assert build_artifact(model, "fp", VARIANTS["onnx-fp32"], ConversionContext(), cache)["cache_hit"]


def test_a_moved_cache_still_hits_with_its_new_paths(tmp_path: Path) -> None:
    model = tiny()
    first = build_artifact(model, "fp", VARIANTS["onnx-fp32"], ConversionContext(), ArtifactCache(tmp_path / "a"))
    (tmp_path / "a").rename(tmp_path / "b")
    moved = build_artifact(model, "fp", VARIANTS["onnx-fp32"], ConversionContext(), ArtifactCache(tmp_path / "b"))
    assert moved["cache_hit"] and moved["path"].startswith(str(tmp_path / "b")) and Path(moved["path"]).exists()
    assert moved["sha256"] == first["sha256"]


def test_intermediate_files_are_removed_with_the_context(tmp_path: Path) -> None:
    with ConversionContext(scratch_root=tmp_path) as ctx:
        build_artifact(tiny(), "fp", VARIANTS["onnx-fp16"], ctx, ArtifactCache(tmp_path / "cache"))
        assert list(tmp_path.glob("bench-onnx-*"))
    assert not list(tmp_path.glob("bench-onnx-*"))
