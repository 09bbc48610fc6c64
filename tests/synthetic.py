"""Results records built in code, for report tests that need a shape no committed run has: a model with
twelve variants at nearly equal latency, or unpaired medians that contradict the paired ratios."""

from __future__ import annotations

import copy
from pathlib import Path

from harness.results.schema import (
    ROUNDS_STATISTIC,
    ArtifactInfo,
    LatencyStats,
    MemoryStats,
    PairedComparison,
    ParityResult,
    Result,
    RunRecord,
    load_results,
)

FIXTURES = Path(__file__).parent / "fixtures" / "results"
CLASSIFIERS = FIXTURES / "classifiers-b972745.json"
GENAI = FIXTURES / "genai-b972745.json"
SMOKE = FIXTURES / "smoke-b972745.json"


def latency(median: float, spread: float = 0.02) -> LatencyStats:
    low, high = median * (1 - spread), median * (1 + spread)
    return LatencyStats(
        median=median, mean=median, std=median * spread, min=low, max=high, p90=high, p99=high,
        ci95=[low, high], n=60, cv=spread, process_medians=[low, median, high], calls_per_sample=1,
    )  # fmt: skip


def case(
    variant: str,
    median_ms: float,
    size_bytes: int,
    versus: tuple[float, float, float] | None = None,
    *,
    model: str = "synthetic",
    accuracy: float = 0.95,
    peak_rss: int = 80_000_000,
    passed: bool = True,
    against: str = "torch-fp32",
) -> Result:
    """One measured case; `versus`: (ratio, low, high) to `against`, paired."""
    comparison = None
    if versus is not None:
        ratio, low, high = versus
        verdict = "improvement" if high < 0.97 else "regression" if low > 1.03 else "no change"
        comparison = PairedComparison(against, ratio, [low, high], verdict, 0.03, "", ROUNDS_STATISTIC)
    return Result(
        model=model,
        variant=variant,
        format=variant.split("-")[0],
        device="cpu",
        backend="synthetic",
        status="ok",
        artifact=ArtifactInfo(path=f"/tmp/{variant}", size_bytes=size_bytes),
        latency_ms=latency(median_ms),
        samples_ms=[[median_ms * (1 + 0.01 * (i % 5 - 2)) for i in range(20)]],
        memory=MemoryStats(source="synthetic", peak_rss_bytes=peak_rss),
        parity=ParityResult(passed=passed, metrics={"task_accuracy": accuracy}, failures=[] if passed else ["x"]),
        versus=comparison,
    )


def record(results: list[Result], name: str = "synthetic") -> RunRecord:
    """The classifiers fixture's environment and profile around `results`."""
    base = load_results(CLASSIFIERS)
    run = copy.deepcopy(base)
    run.run_id = name
    run.results = results
    models = sorted({r.model for r in results})
    variants = [r.variant for r in results]
    run.profile = run.profile.model_copy(
        update={"profile": run.profile.profile.model_copy(update={"models": models, "variants": variants})}
    )
    return run


def twelve_variants() -> RunRecord:
    """Twelve variants within a few percent of each other on latency and accuracy."""
    results = [case("torch-fp32", 1.0, 160_000, accuracy=0.95)]
    for index in range(11):
        ratio = 0.50 + 0.004 * index
        results.append(
            case(
                f"onnx-variant-{index:02d}",
                0.5 + 0.002 * index,
                160_000 - 9_000 * index,
                (ratio, ratio - 0.01, ratio + 0.01),
                accuracy=0.95 - 0.001 * (index % 3),
            )
        )
    return record(results, "twelve")
