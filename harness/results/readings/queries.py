"""What every reader of a run asks of its results: which cases were measured, in which order the profile
lists them, and which parity figure is a case's task metric."""

from __future__ import annotations

from harness.results.schema import Result, RunRecord


def measured(result: Result) -> bool:
    return result.status == "ok" and result.latency_ms is not None


def ordered_results(record: RunRecord) -> list[Result]:
    """Results in the profile's model and variant order, whatever order they finished in."""
    models = record.profile.profile.models
    variants = record.profile.profile.variants

    def rank(values: list[str], value: str) -> int:
        return values.index(value) if value in values else len(values)

    return sorted(record.results, key=lambda r: (rank(models, r.model), r.model, rank(variants, r.variant), r.device))


def accuracy_metric(result: Result) -> tuple[str, float] | None:
    """The parity figure a Pareto view plots: task accuracy, else a decoder's next-token agreement, else
    top-1 agreement, else cosine."""
    if result.parity is None:
        return None
    for key in ("task_accuracy", "next_token_agreement", "top1_agreement", "cosine"):
        value = result.parity.metrics.get(key)
        if value is not None:
            return key, float(value)
    return None
