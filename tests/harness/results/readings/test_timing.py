"""The time breakdown: the share measured, start-up per process, and what the conversions cost."""

from __future__ import annotations

import copy

from harness.results.readings.timing import breakdown_line, phase_lines, slowest_conversions
from harness.results.schema import ProcessTiming, RunTiming, load_results
from tests.synthetic import CLASSIFIERS


def test_the_closing_line_sums_sampling_and_start_up_over_every_process() -> None:
    timing = RunTiming(
        wall_s=100.0,
        prepare_s=30.0,
        unpaired_s=40.0,
        paired_s=29.0,
        reporting_s=1.0,
        conversions_s=25.0,
        processes=[
            ProcessTiming("prepare", "m", 30.0, 0.5),
            ProcessTiming("unpaired", "m a cpu", 10.0, 2.0, 5.0),
            ProcessTiming("unpaired", "m b cpu", 10.0, 3.0, 5.0),
            ProcessTiming("paired", "m cpu", 29.0, 1.0, 10.0),
            ProcessTiming("unpaired", "m c cpu", 1.0, None),  # died before it loaded
        ],
    )
    assert breakdown_line(timing) == (
        "measured 20 s of 100 s (20%); start-up 6 s in 5 processes (median 1.50 s); conversions 25 s"
    )
    lines = phase_lines(timing)
    assert lines[0] == "wall 100.0 s: prepare and convert 30.0 s, unpaired 40.0 s, paired 29.0 s, reporting 1.0 s"
    assert "unpaired: 3 processes, wall 21.0 s, start-up median 2.50 s, sampling 10.0 s" in lines


def test_slowest_conversions_count_each_built_artifact_once_and_no_cache_hit() -> None:
    run = copy.deepcopy(load_results(CLASSIFIERS))
    for index, result in enumerate(run.results):
        result.artifact.conversion_s = float(index + 1)
        result.artifact.cache_hit = result.variant == "onnx-fp16"
    slowest = slowest_conversions(run, count=len(run.results))
    assert not any("onnx-fp16" in line for line in slowest)
    seconds = [float(line.split()[-2]) for line in slowest]
    assert seconds == sorted(seconds, reverse=True) and len(slowest) == len(run.results) - 1
