"""A held-out decoder in the shape of today's small LLMs (RMSNorm, rotary positions, grouped-query attention,
SwiGLU; `modern_decoder.py`, a user file outside the package) on every format (issue 30): ONNX and
ExecuTorch reproduce torch's greedy continuations, every Core ML build declares its cache as state, and
`bench run` takes it from its file end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.base import ConversionContext
from converters.build import build_artifact
from converters.cache import ArtifactCache
from converters.executorch import DELEGATION_FILE, ET_MISSING
from converters.fingerprint import fingerprint_model
from harness.backends.base import LoadRequest
from harness.backends.executorch import ExecuTorchBackend
from harness.generation.measure import greedy, kv_cache_record, session_step, teacher_forced, torch_step
from profiles.catalog import VARIANTS
from profiles.zoo import LoadedModel, ModelSpec, decoder_info, load_model, resolve_model
from tests.conftest import ROOT, bench

HERE = Path(__file__).resolve().parent
REF = f"{(HERE / 'modern_decoder.py').relative_to(ROOT)}:build"
COREML_VARIANTS = ["coreml-fp32", "coreml-fp16", "coreml-w8", "coreml-w4", "coreml-pal6", "coreml-pal4"]
requires_executorch = pytest.mark.skipif(importlib.util.find_spec("executorch") is None, reason=ET_MISSING)
requires_coremltools = pytest.mark.skipif(
    importlib.util.find_spec("coremltools") is None,
    reason="coremltools is not installed (pip install 'ondevice-bench[coreml]')",
)


@pytest.fixture(scope="module")
def modern() -> tuple[ModelSpec, LoadedModel]:
    spec = resolve_model(str(ROOT / REF))
    return spec, load_model(spec)


def prompts(count: int, length: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 96, (count, length), dtype=np.int64)


def test_the_held_out_decoder_follows_the_protocol_with_grouped_query_heads(modern) -> None:
    _, loaded = modern
    info = decoder_info(loaded)
    assert info is not None and (info.heads, info.head_dim) == (2, 16)  # the cache holds the 2 KV heads
    assert loaded.module.blocks[0].heads == 4
    step = torch_step(loaded.module)
    ids = prompts(1, 20)
    whole, _, _ = step(ids, info.empty_cache(), info.empty_cache())
    _, past_k, past_v = step(ids[:, :-4], info.empty_cache(), info.empty_cache())
    tail, _, _ = step(ids[:, -4:], past_k, past_v)
    assert np.allclose(tail, whole[:, -4:], atol=1e-4)  # rotary positions continue from the cache


def _built(loaded: LoadedModel, names: list[str], directory: Path) -> dict[str, dict]:
    cache = ArtifactCache(directory)
    with ConversionContext() as ctx:
        return {name: build_artifact(loaded, fingerprint_model(loaded), VARIANTS[name], ctx, cache) for name in names}


def _session(path: str) -> tuple[ExecuTorchBackend, object]:
    backend = ExecuTorchBackend()
    request = LoadRequest(path, "cpu", 1, REF)
    backend.prepare(request)
    return backend, backend.load(request)


@requires_executorch
def test_onnx_and_executorch_reproduce_torch_greedy_and_executorch_keeps_its_cache_inside(modern, tmp_path) -> None:
    """fp32 ONNX (cache in and out) and ExecuTorch XNNPACK (static cache in the program's mutable buffers)
    continue every prompt exactly as torch does; the ExecuTorch session says where its cache is."""
    import onnxruntime as ort

    _, loaded = modern
    info = decoder_info(loaded)
    assert info is not None
    built = _built(loaded, ["onnx-fp32", "et-xnnpack-fp32"], tmp_path)
    notes = json.loads((Path(built["et-xnnpack-fp32"]["path"]).parent / DELEGATION_FILE).read_text())
    assert notes["decoder"]["inputs"] == ["tokens", "positions"]
    assert "static KV cache" in built["et-xnnpack-fp32"]["converter_path"]

    onnx = ort.InferenceSession(built["onnx-fp32"]["path"], providers=["CPUExecutionProvider"])
    names = [i.name for i in onnx.get_inputs()]

    def onnx_step(*arrays):
        return tuple(onnx.run(None, dict(zip(names, arrays, strict=True))))

    reference = torch_step(loaded.module)
    rows = prompts(6, 24)
    expected = [greedy(reference, row, 32, info.empty_cache()) for row in rows]
    backend, session = _session(built["et-xnnpack-fp32"]["path"])
    try:
        kv = kv_cache_record(session, info.empty_cache().shape)
        assert kv.state_bytes == 2 * 2 * 2 * 640 * 16 * 4 and "ExecuTorch" in kv.kind, kv
        for row, tokens in zip(rows, expected, strict=True):
            assert np.array_equal(greedy(onnx_step, row, 32, info.empty_cache()), tokens)
            assert np.array_equal(greedy(session_step(session), row, 32, info.empty_cache()), tokens)
    finally:
        backend.close()


@pytest.mark.slow
@requires_executorch
def test_executorch_int8_quantizes_activations_dynamically_and_keeps_the_next_tokens(modern, tmp_path) -> None:
    """Slow (minutes on 2 cores: the dynamic-quantized graph lowers for long): most next tokens agree."""
    _, loaded = modern
    info = decoder_info(loaded)
    assert info is not None
    built = _built(loaded, ["et-xnnpack-int8"], tmp_path)["et-xnnpack-int8"]
    assert "dynamic activations" in built["converter_path"]
    text = prompts(4, 64)
    wanted, _ = teacher_forced(torch_step(loaded.module), text, info.empty_cache())
    backend, session = _session(built["path"])
    try:
        predicted, _ = teacher_forced(session_step(session), text, info.empty_cache())
    finally:
        backend.close()
    assert np.mean(predicted == wanted) > 0.8


@pytest.mark.slow
@requires_coremltools
def test_every_coreml_build_declares_the_cache_as_state(modern, tmp_path) -> None:
    """Every Core ML recipe (and ExecuTorch's Core ML delegate) converts RMSNorm without eps, rotary
    positions and grouped-query attention on Linux, as an iOS18 model with the two cache states."""
    import coremltools as ct

    _, loaded = modern
    built = _built(loaded, COREML_VARIANTS, tmp_path)
    shape = [1, 2, 2, 640, 16]
    for name, artifact in built.items():
        spec = ct.models.MLModel(artifact["path"], skip_model_load=True).get_spec()
        states = {s.name: list(s.type.stateType.arrayType.shape) for s in spec.description.state}
        assert states == {"key_cache": shape, "value_cache": shape}, name
        assert artifact["deployment_target"] == "iOS18", name


@requires_executorch
@requires_coremltools
def test_executorch_core_ml_delegate_takes_the_cache_as_state(modern, tmp_path) -> None:
    import coremltools as ct

    from harness.backends.executorch import coreml_partitions

    _, loaded = modern
    built = _built(loaded, ["et-coreml-fp16"], tmp_path)["et-coreml-fp16"]
    assert built["deployment_target"] == "iOS18"
    partitions = coreml_partitions(Path(built["path"]).read_bytes(), tmp_path / "extracted")
    declared = []
    for partition in partitions:
        spec = ct.models.MLModel(partition.package, skip_model_load=True).get_spec()
        declared += [list(s.type.stateType.arrayType.shape) for s in spec.description.state]
    assert declared == [[1, 2, 2, 640, 16]] * 2


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="requires macOS 15 (Core ML state prediction)")
def test_the_held_out_decoder_runs_on_core_ml_on_macos(modern, tmp_path) -> None:
    out, db = tmp_path / "r.json", f"sqlite:///{tmp_path / 'r.sqlite'}"
    proc = bench("run", "genai", "-m", REF, "-v", "coreml-fp32", "--processes", "1", "--budget", "0.2",
                 "--json", str(out), "--db", db, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(out.read_text())["results"][0]["status"] == "ok"


@pytest.mark.slow
@requires_executorch
def test_the_held_out_decoder_runs_end_to_end_from_its_file(tmp_path: Path) -> None:
    """Acceptance 5 of issue 30: `bench run` with the file's factory on torch, ONNX and ExecuTorch, each `ok`
    with generation figures and fp32 token parity."""
    profile = tmp_path / "gen.toml"
    profile.write_text(
        f'models = ["{REF}"]\nvariants = ["torch-fp32", "onnx-fp32", "et-xnnpack-fp32"]\n'
        "[paired]\nenabled = false\n[measure]\nbudget_s = 0.3\nprocesses = 1\nwarmup = 2\n"
        "[generation]\nprompt_lengths = [8, 32]\nnew_tokens = 16\nparity_prompt_tokens = 16\nparity_text_tokens = 32\n"
        "[parity]\nsamples = 4\n"
    )
    out = tmp_path / "results.json"
    proc = bench("run", str(profile), "--json", str(out), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}", cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())["results"]
    statuses = {r["variant"]: r["status"] for r in results}
    assert statuses == {"torch-fp32": "ok", "onnx-fp32": "ok", "et-xnnpack-fp32": "ok"}
    for result in results:
        assert set(result["generation"]["ttft_ms"]) == {"8", "32"}
        assert result["parity"]["metrics"]["full_match"] == 1.0, result["variant"]
