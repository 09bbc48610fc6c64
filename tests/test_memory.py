from __future__ import annotations

import sys

import numpy as np
import pytest

from harness.memory import PeakTracker


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux interfaces")
def test_peak_is_per_phase_after_reset() -> None:
    tracker = PeakTracker()
    if not tracker.resettable:
        pytest.skip("this kernel refuses writes to /proc/self/clear_refs")
    block = np.ones(200 * 1024 * 1024 // 8)  # 200 MB touched
    peak_with_block = tracker.peak()
    del block
    tracker.reset()
    assert tracker.peak() < peak_with_block - 150 * 1024 * 1024
    assert tracker.source == "linux VmHWM (reset per phase)"


def test_rusage_v4_offsets() -> None:
    """The footprint fields of struct rusage_info_v4 (macOS), from a buffer laid out here."""
    from harness.memory import parse_rusage_v4

    raw = bytearray(400)
    raw[72:80] = (123_456_789).to_bytes(8, "little")
    raw[240:248] = (987_654_321).to_bytes(8, "little")
    assert parse_rusage_v4(bytes(raw)) == (123_456_789, 987_654_321)
