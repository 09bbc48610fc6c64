from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from converters.base import ConversionContext
from converters.build import build_artifact
from converters.cache import ArtifactCache
from converters.fingerprint import Fingerprint, _source_files, fingerprint_model
from profiles.catalog import VARIANTS, Variant
from profiles.errors import ConversionError
from profiles.zoo import LoadedModel, load_model, resolve_model
from tests.conftest import bench


def build(
    model: LoadedModel, fingerprint: str, cache: ArtifactCache, scratch: Path, variant: Variant = VARIANTS["onnx-fp32"]
) -> dict[str, Any]:
    """A build with a fresh context whose intermediate files stay under the test's directory."""
    return build_artifact(model, Fingerprint(fingerprint), variant, ConversionContext(scratch_root=scratch), cache)


def tiny() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()).eval(), (torch.ones(1, 4),))


def test_onnx_export_runs_and_matches_torch(tmp_path: Path) -> None:
    model = tiny()
    info = build(model, "fp", ArtifactCache(tmp_path), tmp_path)
    assert info["converter_path"] == "torch.onnx dynamo" and info["opset"] == 18
    assert info["size_bytes"] == sum((Path(info["path"]).parent / f).stat().st_size for f in info["files"])
    assert info["op_histogram"].get("Gemm", 0) + info["op_histogram"].get("MatMul", 0) >= 1
    assert info["weight_bytes_by_dtype"] == {"float": (4 * 8 + 8) * 4}
    out = ort.InferenceSession(info["path"]).run(None, {"input": np.ones((1, 4), np.float32)})[0]
    assert np.allclose(out, model.module(torch.ones(1, 4)).detach().numpy(), atol=1e-6)


def test_large_models_keep_external_data_together(tmp_path: Path) -> None:
    model = load_model(resolve_model("vit_small"))
    info = build(model, "vit", ArtifactCache(tmp_path), tmp_path)
    assert sorted(info["files"]) == ["model.onnx", "model.onnx.data"]
    assert info["size_bytes"] > 8_000_000
    session = ort.InferenceSession(info["path"])
    assert session.run(None, {"input": model.example_inputs[0].numpy()})[0].shape == (1, 1000)


def test_cache_hits_misses_and_rebuilds_corruption(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    model = tiny()
    first = build(model, "fp-a", cache, tmp_path)
    again = build(model, "fp-a", cache, tmp_path)
    assert not first["cache_hit"] and again["cache_hit"] and again["sha256"] == first["sha256"]

    other_weights = build(model, "fp-b", cache, tmp_path)
    assert not other_weights["cache_hit"]
    other_recipe = replace(VARIANTS["onnx-fp32"], recipe={"opset": 17})
    assert not build(model, "fp-a", cache, tmp_path, other_recipe)["cache_hit"]

    Path(first["path"]).write_bytes(b"corrupted")
    rebuilt = build(model, "fp-a", cache, tmp_path)
    assert not rebuilt["cache_hit"] and rebuilt["sha256"] == first["sha256"]


def test_fingerprint_covers_weights_and_input_spec() -> None:
    model = tiny()
    base = fingerprint_model(model).digest
    reshaped = LoadedModel(model.module, (torch.ones(2, 4),))
    assert fingerprint_model(reshaped).digest != base


def test_export_failure_is_a_conversion_error_with_both_paths(tmp_path: Path) -> None:
    class Unexportable(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.eigvals(x.reshape(2, 2)).real  # no ONNX op for either exporter

    model = LoadedModel(Unexportable().eval(), (torch.ones(1, 4),))
    with pytest.raises(ConversionError, match=r"dynamo: .*torchscript: .*'aten::linalg_eigvals'"):
        build(model, "u", ArtifactCache(tmp_path), tmp_path)


@pytest.mark.parametrize(
    "manifest",
    ['{"files": []}', '{"files": {}, "info": {}}', '{"files": {"model.onnx": "abc"}, "info": {"path": "x"}}', "[]"],
    ids=["files-list", "empty-info", "bad-hash", "not-an-object"],
)
def test_a_malformed_manifest_is_rebuilt(tmp_path: Path, manifest: str) -> None:
    cache = ArtifactCache(tmp_path)
    model = tiny()
    first = build(model, "fp", cache, tmp_path)
    (Path(first["path"]).parent / "manifest.json").write_text(manifest)
    rebuilt = build(model, "fp", cache, tmp_path)
    assert not rebuilt["cache_hit"] and rebuilt["sha256"] == first["sha256"]
    assert build(model, "fp", cache, tmp_path)["cache_hit"]


def test_a_moved_cache_still_hits_with_its_new_paths(tmp_path: Path) -> None:
    model = tiny()
    first = build(model, "fp", ArtifactCache(tmp_path / "a"), tmp_path)
    (tmp_path / "a").rename(tmp_path / "b")
    moved = build(model, "fp", ArtifactCache(tmp_path / "b"), tmp_path)
    assert moved["cache_hit"] and moved["path"].startswith(str(tmp_path / "b")) and Path(moved["path"]).exists()
    assert moved["sha256"] == first["sha256"]


def test_intermediate_files_are_removed_with_the_context(tmp_path: Path) -> None:
    with ConversionContext(scratch_root=tmp_path) as ctx:
        build_artifact(tiny(), Fingerprint("fp"), VARIANTS["onnx-fp16"], ctx, ArtifactCache(tmp_path / "cache"))
        assert list(tmp_path.glob("bench-onnx-*"))
    assert not list(tmp_path.glob("bench-onnx-*"))


COMPUTES = """
import os

import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(16, 16) for _ in range(3)])
        self.norm = torch.nn.LayerNorm(16, eps=float(os.environ.get("EPS", "1e-5")))
        self.repeat_last = os.environ.get("SLOW") == "1"

    def forward(self, x):
        for block in self.blocks:
            x = torch.relu(block(x))
        if self.repeat_last:
            x = torch.relu(self.blocks[-1](x))
        return self.norm(x)


def build():
    torch.manual_seed(0)
    return Net().eval(), torch.randn(1, 16)
"""


def _converted(directory: Path, env: dict[str, str]) -> dict[str, str]:
    proc = bench("convert", "smoke", "-m", "computes:build", "-v", "onnx-fp32", "--explain", cwd=directory, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = [line for line in proc.stdout.splitlines() if "│ onnx-fp32" in line]
    return {"row": " ".join(row.split()), "cache": row.split("│")[6].strip()}


@pytest.mark.slow
def test_the_cache_key_follows_what_the_model_computes(tmp_path: Path) -> None:
    """Two builds of one model differing only in a flag `forward` reads, or in a LayerNorm eps, must not
    share an artifact (and `--explain` says what changed); the same builds again must, and a run measures
    the artifact of its own build."""
    (tmp_path / "computes.py").write_text(COMPUTES)
    base = {"SLOW": "0", "EPS": "1e-5", "ONDEVICE_BENCH_CACHE": str(tmp_path / "cache")}
    first = _converted(tmp_path, base)
    assert first["cache"] == "built" and "miss: no earlier artifact" in first["row"]
    slow = _converted(tmp_path, {**base, "SLOW": "1"})
    assert slow["cache"] == "built", slow
    assert "repeat_last: False -> True" in slow["row"] and "model attributes changed" in slow["row"]
    eps = _converted(tmp_path, {**base, "EPS": "1e-3"})
    assert eps["cache"] == "built" and "norm.eps: 1e-05 -> 0.001" in eps["row"], eps
    artifacts = {}
    for flag in ("0", "1"):
        out = tmp_path / f"r{flag}.json"
        proc = bench(
            "run", "smoke", "-m", "computes:build", "-v", "onnx-fp32", "--processes", "1", "--budget", "0.2",
            "--json", str(out), cwd=tmp_path, env={**base, "SLOW": flag},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (result,) = json.loads(out.read_text())["results"]
        artifacts[flag] = result["artifact"]
    normal, slow_build = artifacts["0"], artifacts["1"]
    assert normal["cache_hit"] and slow_build["cache_hit"]  # both built above: the same build hits
    assert slow_build["sha256"] != normal["sha256"]
    assert slow_build["op_histogram"]["Gemm"] == normal["op_histogram"]["Gemm"] + 1


def test_a_zoo_models_key_leaves_out_the_zoo_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding or editing one zoo entry must not re-key (and so reconvert) every zoo model: each zoo factory
    lives in its model's module, not in the file of the table."""
    import profiles.zoo

    loaded = load_model(resolve_model("digits_cnn"))
    before = fingerprint_model(loaded)
    assert not [name for name in before.attributes if name.startswith("profiles.zoo.") and name.count(".") == 2]
    assert Path(profiles.zoo.__file__) not in _source_files(loaded)
    monkeypatch.setitem(profiles.zoo.ZOO, "another", replace(profiles.zoo.ZOO["vit_small"], name="another"))
    assert fingerprint_model(load_model(resolve_model("digits_cnn"))).digest == before.digest


SETTING = {"scale": 2.0}


class Scaled(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * SETTING["scale"]  # a module-level setting, e.g. read from the environment at import


def test_fingerprint_covers_buffers_settings_and_attributes() -> None:
    model = LoadedModel(Scaled().eval(), (torch.ones(1, 4),))
    fingerprint = fingerprint_model(model)
    assert set(fingerprint.inputs) == {"code", "classes", "weights", "attributes", "settings", "inputs"}
    assert fingerprint_model(LoadedModel(Scaled().eval(), (torch.ones(1, 4),))).digest == fingerprint.digest
    assert fingerprint.attributes[f"{Scaled.__module__}.SETTING"] == "{'scale': 2.0}"
    SETTING["scale"] = 3.0
    try:
        assert fingerprint_model(model).digest != fingerprint.digest
    finally:
        SETTING["scale"] = 2.0
    model.module.register_buffer("table", torch.zeros(3), persistent=False)  # not in the state dict
    with_buffer = fingerprint_model(model)
    model.module.table.add_(1)
    assert fingerprint_model(model).digest != with_buffer.digest
    gelu = [LoadedModel(torch.nn.GELU(approximate=a).eval(), (torch.ones(1, 4),)) for a in ("none", "tanh")]
    assert fingerprint_model(gelu[0]).digest != fingerprint_model(gelu[1]).digest
    assert fingerprint_model(gelu[1]).attributes["approximate"] == "'tanh'"


@pytest.mark.slow
def test_a_rebuilt_artifact_says_the_cached_one_was_damaged(tmp_path: Path) -> None:
    """Issue 25 item 14: an artifact whose cached file was overwritten was rebuilt, but `bench convert
    --explain` said `miss: no earlier artifact`, as for a first build. It names the damage instead."""
    (tmp_path / "computes.py").write_text(COMPUTES)
    env = {"ONDEVICE_BENCH_CACHE": str(tmp_path / "cache")}
    assert "miss: no earlier artifact" in _converted(tmp_path, env)["row"]
    (artifact,) = (tmp_path / "cache" / "artifacts").glob("*/*/model.onnx")
    artifact.write_bytes(b"corrupted")
    rebuilt = _converted(tmp_path, env)
    assert rebuilt["cache"] == "built", rebuilt
    assert "miss: the cached artifact was damaged (model.onnx no longer matches its hash): rebuilt" in rebuilt["row"]
    assert "no earlier artifact" not in rebuilt["row"]
