"""What every report says first: each variant against its model's reference, and the best variant."""

from __future__ import annotations

from dataclasses import dataclass

from harness.schema import Result, RunRecord
from harness.stats import Comparison, compare_latency

BEST_RULE = "the fastest variant (median latency) whose parity gate passed, per model and device"
REFERENCE_ORDER = ("torch-fp32", "onnx-fp32", "coreml-fp32")


def measured(result: Result) -> bool:
    return result.status == "ok" and result.latency_ms is not None


def reference_for(results: list[Result], model: str, device: str) -> Result | None:
    """The model's reference on a device: the first measured of torch-fp32, onnx-fp32, coreml-fp32."""
    candidates = {r.variant: r for r in results if r.model == model and r.device == device and measured(r)}
    return next((candidates[v] for v in REFERENCE_ORDER if v in candidates), None)


def against_reference(record: RunRecord, seed: int = 0) -> dict[tuple[str, str, str, str], tuple[str, Comparison]]:
    """Each measured case against its reference on the same device: (reference variant, comparison)."""
    out = {}
    for result in record.results:
        if not measured(result):
            continue
        reference = reference_for(record.results, result.model, result.device)
        if reference is None or reference is result:
            continue
        out[result.case_key] = (reference.variant, compare_latency(reference.samples_ms, result.samples_ms, seed=seed))
    return out


@dataclass
class Best:
    model: str
    device: str
    result: Result
    considered: int


def best_variants(record: RunRecord) -> list[Best]:
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in record.results:
        if measured(result) and (result.parity is None or result.parity.passed):
            groups.setdefault((result.model, result.device), []).append(result)
    return [
        Best(model, device, min(candidates, key=lambda r: r.latency_ms.median), len(candidates))  # type: ignore[union-attr]
        for (model, device), candidates in groups.items()
    ]


def accuracy_metric(result: Result) -> tuple[str, float] | None:
    """The parity figure a Pareto view plots: task accuracy, else top-1 agreement, else cosine."""
    if result.parity is None:
        return None
    for key in ("task_accuracy", "top1_agreement", "cosine"):
        value = result.parity.metrics.get(key)
        if value is not None:
            return key, float(value)
    return None


def size_vs_fp32(result: Result, results: list[Result]) -> float | None:
    """Artifact size over the fp32 artifact of the same model and format; None for fp32 itself."""
    size = result.artifact.size_bytes
    if size is None or result.variant.endswith("fp32"):
        return None
    fp32 = next(
        (
            r.artifact.size_bytes
            for r in results
            if r.model == result.model and r.format == result.format and r.variant.endswith("fp32")
        ),
        None,
    )
    return size / fp32 if fp32 else None


def ordered_results(record: RunRecord) -> list[Result]:
    """Results in the profile's model and variant order, whatever order they finished in."""
    models = list(record.profile.get("models", []))
    variants = list(record.profile.get("variants", []))

    def rank(values: list[str], value: str) -> int:
        return values.index(value) if value in values else len(values)

    return sorted(record.results, key=lambda r: (rank(models, r.model), r.model, rank(variants, r.variant), r.device))
