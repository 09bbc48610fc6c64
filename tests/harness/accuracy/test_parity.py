from __future__ import annotations

import numpy as np

from harness.accuracy.parity import check_gate, evaluate

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(0, 3, (64, 10)).astype(np.float32)
LABELS = LOGITS.argmax(1)


def test_identical_outputs_pass_the_tight_gate() -> None:
    gate = {"max_abs_err": 1e-5, "cosine_min": 0.99999}
    result = evaluate([LOGITS], [LOGITS.copy()], LABELS, "classification", gate, "x")
    assert result.passed and result.failures == []
    assert result.metrics["max_abs_err"] == 0 and result.metrics["snr_db"] is None
    assert result.metrics["top1_agreement"] == 1.0 and result.metrics["accuracy_ratio"] == 1.0


def test_small_noise_gives_the_expected_snr() -> None:
    noise = RNG.normal(0, 0.03, LOGITS.shape).astype(np.float32)  # signal std 3 -> SNR about 40 dB
    result = evaluate([LOGITS], [LOGITS + noise], LABELS, "classification", {"snr_db_min": 35.0}, "x")
    assert 38 < result.metrics["snr_db"] < 42 and result.passed


def test_a_failed_gate_names_metric_value_and_threshold() -> None:
    worse = LOGITS.copy()
    worse[:16] = -worse[:16]  # a quarter of the predictions flip
    gate = {"top1_agreement_min": 0.9, "accuracy_ratio_min": 0.99}
    result = evaluate([LOGITS], [worse], LABELS, "classification", gate, "x")
    assert not result.passed
    assert any(f.startswith("top1_agreement 0.75 < 0.9") for f in result.failures)
    assert any(f.startswith("accuracy_ratio 0.75 < 0.99") for f in result.failures)
    assert result.metrics["task_accuracy"] == 0.75


def test_nan_output_fails_every_gate() -> None:
    bad = LOGITS.copy()
    bad[3, 2] = np.nan
    result = evaluate([LOGITS], [bad], LABELS, "classification", {"cosine_min": 0.0}, "x")
    assert not result.passed
    assert result.failures[0] == "1 NaN/Inf values in the outputs"


def test_classifier_keys_do_not_apply_to_other_models() -> None:
    metrics = {"max_abs_err": 0.1, "cosine": 0.99, "snr_db": 30.0, "nonfinite": 0.0}
    assert check_gate(metrics, {"top1_agreement_min": 0.9, "cosine_min": 0.9}) == []
    assert check_gate(metrics, {"max_abs_err": 0.01}) == ["max_abs_err 0.1 > 0.01"]


def test_embeddings_gate_on_mean_cosine_and_retrieval() -> None:
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(32, 16))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    gate = {"cosine_mean_min": 0.98, "top1_agreement_min": 0.9}  # top-1 does not apply to embeddings
    close = evaluate([embeddings], [embeddings + rng.normal(0, 1e-6, embeddings.shape)], None, "embedding", gate, "x")
    assert close.passed and close.metrics["retrieval_agreement"] == 1.0 and "top1_agreement" not in close.metrics
    shuffled = evaluate([embeddings], [embeddings[::-1].copy()], None, "embedding", gate, "x")
    assert not shuffled.passed and shuffled.failures[0].startswith("cosine_mean ")
    assert shuffled.metrics["retrieval_agreement"] < 0.2
