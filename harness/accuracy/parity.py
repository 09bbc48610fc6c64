"""Accuracy parity of a variant against the PyTorch fp32 reference on the same inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.results.schema import ParityResult

# metric name in the result -> (gate key, "min" or "max")
GATE_KEYS = {
    "max_abs_err": ("max_abs_err", "max"),
    "cosine": ("cosine_min", "min"),
    "snr_db": ("snr_db_min", "min"),
    "top1_agreement": ("top1_agreement_min", "min"),
    "accuracy_ratio": ("accuracy_ratio_min", "min"),
    "cosine_mean": ("cosine_mean_min", "min"),
    "retrieval_agreement": ("retrieval_agreement_min", "min"),
}
TASK_METRICS = ("top1_agreement", "accuracy_ratio", "retrieval_agreement")  # only where the task defines them


def _cosines(reference: np.ndarray, actual: np.ndarray) -> np.ndarray:
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    act = actual.reshape(len(actual), -1).astype(np.float64)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(act, axis=1)
    dots = np.sum(ref * act, axis=1)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.where(dots == 0, 1.0, 0.0))


def retrieval_agreement(reference: np.ndarray, actual: np.ndarray) -> float:
    """Share of samples whose nearest neighbour (cosine, among the other samples) is the same under the
    variant as under the reference: what a search index built from the variant would get right."""

    def neighbours(embeddings: np.ndarray) -> np.ndarray:
        flat = embeddings.reshape(len(embeddings), -1).astype(np.float64)
        flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
        similarity = flat @ flat.T
        np.fill_diagonal(similarity, -np.inf)
        return similarity.argmax(axis=1)

    return float(np.mean(neighbours(reference) == neighbours(actual)))


def compare_outputs(
    references: Sequence[np.ndarray], actuals: Sequence[np.ndarray], labels: np.ndarray | None, task: str
) -> dict[str, float | None]:
    """Metrics over all outputs (N x ... each): errors, cosine, SNR; agreement and accuracy for classifiers;
    retrieval agreement for embeddings."""
    metrics: dict[str, float | None] = {}
    nonfinite = sum(int(np.size(a) - np.isfinite(a).sum()) for a in actuals)
    metrics["nonfinite"] = float(nonfinite)
    diffs = [np.abs(a.astype(np.float64) - r.astype(np.float64)) for r, a in zip(references, actuals, strict=True)]
    scale = max(float(np.max(np.abs(r))) for r in references) or 1.0
    metrics["max_abs_err"] = max(float(np.nanmax(d)) if np.size(d) else 0.0 for d in diffs)
    metrics["max_rel_err"] = metrics["max_abs_err"] / scale
    cosines = np.concatenate([_cosines(r, a) for r, a in zip(references, actuals, strict=True)])
    metrics["cosine"] = float(np.min(cosines)) if nonfinite == 0 else None
    metrics["cosine_mean"] = float(np.mean(cosines)) if nonfinite == 0 else None
    signal = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in references)
    noise = sum(float(np.nansum(d**2)) for d in diffs)
    # None when undefined: NaN/Inf outputs, or outputs identical to the reference (infinite SNR)
    metrics["snr_db"] = float(10 * np.log10(signal / noise)) if noise > 0 and not nonfinite else None
    if task == "embedding" and nonfinite == 0 and len(references[0]) > 2:
        metrics["retrieval_agreement"] = retrieval_agreement(references[0], actuals[0])
    if task == "classification":
        ref_logits, act_logits = references[0].reshape(len(references[0]), -1), actuals[0].reshape(len(actuals[0]), -1)
        ref_top1, act_top1 = ref_logits.argmax(1), act_logits.argmax(1)
        metrics["top1_agreement"] = float(np.mean(ref_top1 == act_top1))
        if ref_logits.shape[1] >= 5:
            top5 = np.argsort(-act_logits, axis=1)[:, :5]
            metrics["top5_agreement"] = float(np.mean([t in row for t, row in zip(ref_top1, top5, strict=True)]))
        if labels is not None:
            reference_accuracy = float(np.mean(ref_top1 == labels))
            metrics["reference_accuracy"] = reference_accuracy
            metrics["task_accuracy"] = float(np.mean(act_top1 == labels))
            metrics["accuracy_ratio"] = (
                metrics["task_accuracy"] / reference_accuracy if reference_accuracy > 0 else None
            )
    return metrics


def check_gate(metrics: dict[str, float | None], gate: dict[str, Any]) -> list[str]:
    """Failure lines (metric, value, threshold); empty when every set threshold holds."""
    failures = []
    if metrics.get("nonfinite"):
        failures.append(f"{int(metrics['nonfinite'])} NaN/Inf values in the outputs")
    for metric, (key, kind) in GATE_KEYS.items():
        threshold = gate.get(key)
        value = metrics.get(metric)
        if threshold is None or (metric == "snr_db" and metrics.get("max_abs_err") == 0):
            continue
        if value is None:
            if metric in TASK_METRICS:
                continue  # the model's task does not define it (no classes, no labels): the key does not apply
            failures.append(f"{metric} is undefined")
        elif kind == "max" and value > threshold:
            failures.append(f"{metric} {value:.3g} > {threshold:.3g}")
        elif kind == "min" and value < threshold:
            failures.append(f"{metric} {value:.5g} < {threshold:.5g}")
    return failures


def evaluate(
    references: Sequence[np.ndarray],
    actuals: Sequence[np.ndarray],
    labels: np.ndarray | None,
    task: str,
    gate: dict[str, Any],
    inputs: str,
) -> ParityResult:
    metrics = compare_outputs(references, actuals, labels, task)
    failures = check_gate(metrics, gate)
    return ParityResult(
        passed=not failures,
        gate={k: v for k, v in gate.items() if v is not None},
        metrics=metrics,
        failures=failures,
        samples=len(references[0]),
        inputs=inputs,
    )
