"""What every report says first: each variant against its model's reference, and what was skipped."""

from __future__ import annotations

from harness.results.schema import Result, RunRecord

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
    models = record.profile.profile.models
    variants = record.profile.profile.variants

    def rank(values: list[str], value: str) -> int:
        return values.index(value) if value in values else len(values)

    return sorted(record.results, key=lambda r: (rank(models, r.model), r.model, rank(variants, r.variant), r.device))


BACKEND_NAMES = {"coreml": "Core ML", "executorch": "ExecuTorch", "onnxruntime": "ONNX Runtime", "torch": "PyTorch"}


def shown(results: list[Result]) -> list[Result]:
    """The rows a table draws: every case but the skipped, which `skipped_lines` sums up."""
    return [r for r in results if r.status != "skipped"]


def skipped_lines(results: list[Result]) -> list[str]:
    """One line per reason a case was skipped, e.g. `2 Core ML variants skipped (coreml-fp16, coreml-w8):
    Core ML runs only on macOS`: on Linux half of a default table is cases that cannot run there, and a
    row each with its reason in full buries the rows that ran."""
    by_reason: dict[str, list[Result]] = {}
    for result in results:
        if result.status == "skipped":
            by_reason.setdefault(result.reason or "no reason given", []).append(result)
    lines = []
    for reason, cases in by_reason.items():
        variants = list(dict.fromkeys(r.variant for r in cases))
        backends = {BACKEND_NAMES.get(r.backend, r.backend) for r in cases}
        family = f"{backends.pop()} " if len(backends) == 1 else ""
        devices = sorted({r.device for r in cases})
        on = f" on {', '.join(devices)}" if len(devices) > 1 else ""
        noun = "variant" if len(variants) == 1 else "variants"
        lines.append(f"{len(variants)} {family}{noun} skipped{on} ({', '.join(variants)}): {reason}")
    return lines
