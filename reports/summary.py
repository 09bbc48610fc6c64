"""What every report says first: each variant against its model's reference, and the best variant."""

from __future__ import annotations

from dataclasses import dataclass

from harness.schema import Result, RunRecord

BEST_RULE = "the fastest variant (median latency) whose parity gate passed, per model and device"
SPEED_WORDS = {"improvement": "faster", "regression": "slower", "no change": "same speed"}


def measured(result: Result) -> bool:
    return result.status == "ok" and result.latency_ms is not None


def references(record: RunRecord) -> set[tuple[str, str, str]]:
    """(model, device, variant) of every case another case was paired with as its reference."""
    return {(r.model, r.device, r.versus.against) for r in record.results if r.versus is not None}


def versus_text(result: Result, record: RunRecord, named: bool = False) -> tuple[str, str]:
    """The paired ratio to the model's reference as measured and stored by the harness, e.g.
    `0.46x [0.45, 0.47] faster`, and its verdict ("" for the reference itself or an unpaired case)."""
    comparison = result.versus
    if comparison is None:
        is_reference = (result.model, result.device, result.variant) in references(record)
        return ("reference" if is_reference else "-"), ""
    interval = f" [{comparison.ci95[0]:.2f}, {comparison.ci95[1]:.2f}]" if comparison.ci95 else ""
    than = f" than {comparison.against}" if named and comparison.verdict != "inconclusive" else ""
    words = SPEED_WORDS.get(comparison.verdict, comparison.verdict)
    return f"{comparison.ratio:.2f}x{interval} {words}{than}", comparison.verdict


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
