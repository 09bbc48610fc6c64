from __future__ import annotations

import sys

import numpy as np
import pytest

from harness.measure.memory import Footprint, PeakTracker, darwin_source, neural_fields_filled, parse_rusage

MB = 1024 * 1024


def _touch_and_free(tracker: PeakTracker) -> int:
    block = np.ones(200 * MB // 8)  # 200 MB touched
    peak_with_block = tracker.peak()
    del block
    tracker.reset()
    return peak_with_block


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux interfaces")
def test_peak_is_per_phase_after_reset() -> None:
    tracker = PeakTracker()
    if not tracker.resettable:
        pytest.skip("this kernel refuses writes to /proc/self/clear_refs")
    peak_with_block = _touch_and_free(tracker)
    assert tracker.peak() < peak_with_block - 150 * MB
    assert tracker.source == "linux VmHWM (reset per phase)"


@pytest.mark.skipif(sys.platform != "darwin", reason="requires macOS (proc_reset_footprint_interval)")
def test_macos_footprint_peak_is_per_phase_after_reset() -> None:
    tracker = PeakTracker()
    assert tracker.resettable and tracker.source.startswith("macOS phys_footprint (interval max, reset per phase)")
    peak_with_block = _touch_and_free(tracker)
    assert tracker.peak() < peak_with_block - 150 * MB


def _rusage(fields: dict[int, int], size: int) -> bytes:
    raw = bytearray(size)
    for offset, value in fields.items():
        raw[offset : offset + 8] = value.to_bytes(8, "little")
    return bytes(raw)


def test_rusage_v4_footprint_fields() -> None:
    """struct rusage_info_v4 (macOS): footprint at 72, lifetime max at 240, interval max at 280."""
    raw = _rusage({72: 100 * MB, 240: 900 * MB, 280: 300 * MB}, 296)
    footprint = parse_rusage(raw, neural=False)
    assert footprint == Footprint(current=100 * MB, lifetime_peak=900 * MB, interval_peak=300 * MB, neural=None)
    assert footprint.peak(per_phase=True) == 300 * MB  # the inference peak is not the compile peak
    assert footprint.peak(per_phase=False) == 900 * MB


def test_rusage_v6_adds_the_neural_engine_interval_peak() -> None:
    """The phase peak adds ri_interval_max_neural_footprint (byte 384), not the current neural footprint
    (byte 368): Neural Engine memory freed before the read still counts."""
    raw = _rusage({72: 100 * MB, 240: 900 * MB, 280: 300 * MB, 368: 50 * MB, 384: 80 * MB}, 464)
    footprint = parse_rusage(raw, neural=True)
    assert footprint.neural == 50 * MB and footprint.neural_interval_peak == 80 * MB
    assert footprint.now() == 150 * MB and footprint.peak(per_phase=True) == 380 * MB
    assert footprint.peak(per_phase=False) == 950 * MB


def test_the_neural_fields_are_read_from_macos_15_not_from_the_v6_struct() -> None:
    """rusage_info_v6 exists from macOS 13, but xnu fills its neural fields only from macOS 15: a zero there
    before 15 is missing, not zero."""
    assert not neural_fields_filled((13, 0)) and not neural_fields_filled((14, 6))
    assert neural_fields_filled((15, 0)) and neural_fields_filled((26,))
    raw = _rusage({72: 100 * MB, 280: 300 * MB}, 464)
    assert parse_rusage(raw, neural=False).neural is None


def test_the_memory_source_says_what_the_peak_counts() -> None:
    assert darwin_source(True, True) == (
        "macOS phys_footprint (interval max, reset per phase) + ri_interval_max_neural_footprint (rusage v6)"
    )
    assert darwin_source(False, False) == (
        "macOS phys_footprint (lifetime max); Neural Engine memory not included (needs macOS 15)"
    )


@pytest.mark.skipif(sys.platform != "darwin", reason="requires macOS 15 (rusage_info_v6 neural fields)")
def test_macos_reads_the_neural_interval_peak_on_macos_15() -> None:
    from harness.host import macos_version

    tracker = PeakTracker()
    if neural_fields_filled(macos_version()):
        assert tracker.source.endswith("+ ri_interval_max_neural_footprint (rusage v6)")
    else:
        assert tracker.source.endswith("Neural Engine memory not included (needs macOS 15)")
