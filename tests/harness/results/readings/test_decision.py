"""The shipping decision: the paired ratios decide, ties are stated and broken by size then memory."""

from __future__ import annotations

from harness.results.readings.decision import decide
from harness.results.schema import load_results
from profiles.schema import Decide
from tests.conftest import SmokeRun
from tests.synthetic import CLASSIFIERS, case, record


def test_paired_ratios_decide_where_the_unpaired_medians_disagree() -> None:
    """`onnx-fast-median` has the lowest unpaired median (its processes ran while the machine was quiet)
    but the paired ratio puts it clearly behind `et-paired-winner`."""
    run = record(
        [
            case("torch-fp32", 1.00, 160_000),
            case("onnx-fast-median", 0.20, 150_000, (0.40, 0.38, 0.42)),
            case("et-paired-winner", 0.30, 150_000, (0.25, 0.24, 0.26)),
        ]
    )
    (decision,) = decide(run)
    assert min(run.results, key=lambda r: r.latency_ms.median).variant == "onnx-fast-median"
    assert decision.basis == "paired"
    assert decision.variant == "et-paired-winner"
    assert decision.tied == []
    assert decision.sentence().startswith("et-paired-winner: 0.25x [0.24, 0.26] of torch-fp32, fastest")


def test_a_tie_on_latency_is_stated_and_broken_by_size() -> None:
    run = record(
        [
            case("torch-fp32", 1.00, 160_000),
            case("onnx-fp32", 0.20, 163_000, (0.20, 0.19, 0.20)),
            case("et-xnnpack-int8", 0.21, 50_000, (0.21, 0.20, 0.22)),
            case("onnx-fp16", 0.30, 40_000, (0.30, 0.29, 0.31)),  # smallest, but clearly slower
            case("onnx-broken", 0.10, 10_000, (0.10, 0.09, 0.11), passed=False),  # fastest, fails parity
        ]
    )
    (decision,) = decide(run)
    assert decision.variant == "et-xnnpack-int8"
    assert [c.result.variant for c in decision.tied] == ["onnx-fp32"]
    assert decision.tie_break == "size"
    assert decision.excluded == {"onnx-broken": "failed its parity gate"}
    assert decision.sentence() == (
        "et-xnnpack-int8: 0.21x [0.20, 0.22] of torch-fp32, tied on latency with onnx-fp32 (0.20x [0.19, 0.20]),"
        " chosen for size 0.31x of onnx-fp32's"
    )


def test_an_interval_too_wide_to_rank_is_named_not_chosen_for_its_size() -> None:
    """A pairing cut short left `et-tiny` at [0.00, 16488]: as a tie it would win on size with no evidence."""
    run = record(
        [
            case("torch-fp32", 1.00, 160_000),
            case("onnx-fp32", 0.20, 163_000, (0.20, 0.19, 0.21)),
            case("et-tiny", 0.30, 1_000, (0.30, 0.0, 16488.0)),
        ]
    )
    (decision,) = decide(run)
    assert decision.variant == "onnx-fp32" and decision.tied == []
    assert [c.result.variant for c in decision.ranked] == ["onnx-fp32", "torch-fp32"]
    assert decision.excluded["et-tiny"].startswith("interval 0.30x [0.00, 16488.00] too wide to rank")


def test_a_wide_interval_wholly_faster_than_the_reference_is_ranked() -> None:
    """Three short paired processes (the smoke profile) gave [0.10, 0.32]: wide, but the variant is faster
    than the reference at either end, so it is chosen rather than the reference."""
    run = record([case("torch-fp32", 1.00, 160_000), case("onnx-fp32", 0.18, 163_000, (0.18, 0.10, 0.32))])
    (decision,) = decide(run)
    assert decision.variant == "onnx-fp32" and decision.excluded == {}


def test_equal_size_ties_fall_to_peak_memory() -> None:
    run = record(
        [
            case("torch-fp32", 1.00, 160_000),
            case("a-fp32", 0.50, 100_000, (0.50, 0.45, 0.55), peak_rss=90_000_000),
            case("b-fp32", 0.52, 100_000, (0.52, 0.47, 0.57), peak_rss=45_000_000),
        ]
    )
    (decision,) = decide(run)
    assert decision.variant == "b-fp32" and decision.tie_break == "peak memory"
    assert "chosen for peak memory 0.50x of a-fp32's" in decision.sentence()


def test_without_pairing_the_medians_decide_and_the_decision_says_so() -> None:
    run = record([case("torch-fp32", 1.00, 160_000), case("onnx-fp32", 0.20, 160_000), case("onnx-x", 0.5, 1)])
    (decision,) = decide(run)
    assert decision.basis == "unpaired median"
    assert decision.variant == "onnx-fp32"
    assert "by unpaired medians (no paired ratio: a weaker basis than pairing)" in decision.sentence()


def test_committed_run_skips_excluded_and_no_interval_said() -> None:
    (decision,) = decide(load_results(CLASSIFIERS))
    assert decision.basis == "paired" and decision.variant == "et-xnnpack-fp32"
    assert decision.excluded == {"coreml-fp16": "skipped", "coreml-w8": "skipped"}
    assert "no interval: too few paired processes" in decision.sentence()


def test_decide_limits_exclude_a_faster_variant_with_the_limit_named() -> None:
    run = record(
        [
            case("torch-fp32", 1.00, 160_000, accuracy=0.95),
            case("onnx-big", 0.20, 2_500_000, (0.20, 0.19, 0.21)),  # fastest, over the size limit
            case("onnx-hungry", 0.22, 100_000, (0.22, 0.21, 0.23), peak_rss=400_000_000),
            case("onnx-inaccurate", 0.24, 100_000, (0.24, 0.23, 0.25), accuracy=0.80),
            case("onnx-slow", 0.90, 100_000, (0.90, 0.89, 0.91)),
            case("onnx-fp16", 0.40, 120_000, (0.40, 0.39, 0.41)),
        ]
    )
    limits = Decide(max_size_mb=1.0, max_peak_memory_mb=200.0, min_accuracy_ratio=0.98, max_latency_ratio=0.5)
    run.profile = run.profile.model_copy(update={"profile": run.profile.profile.model_copy(update={"decide": limits})})
    (decision,) = decide(run)
    assert decision.variant == "onnx-fp16"
    assert decision.excluded == {
        "onnx-big": "over [decide] max_size_mb = 1 (2.5 MB)",
        "onnx-hungry": "over [decide] max_peak_memory_mb = 200 (400.0 MB)",
        "onnx-inaccurate": "under [decide] min_accuracy_ratio = 0.98 (task_accuracy 0.842x)",
        "onnx-slow": "over [decide] max_latency_ratio = 0.5 (0.90x)",
    }


def test_a_run_writes_its_decisions_into_the_results_file(smoke_run: SmokeRun) -> None:
    """The file keeps the decision the renderers print: the same sentence, the ranking and the basis."""
    run = load_results(smoke_run.results)
    assert [d.sentence for d in run.decisions] == [d.sentence() for d in decide(run)]
    (stored,) = run.decisions
    assert stored.basis == "paired" and stored.reference == "torch-fp32"
    assert stored.variant in {r.variant for r in run.results}
    # One short paired process: on a noisy machine the interval may be too wide to rank, which excludes it.
    assert {r.variant for r in stored.ranked} | set(stored.excluded) == {
        r.variant for r in run.results if r.status == "ok"
    }
    assert all("too wide to rank" in why for why in stored.excluded.values())
    assert f"ship on cpu: {stored.sentence}" in " ".join(smoke_run.stdout.split())
