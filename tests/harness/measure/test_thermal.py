from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from harness.measure.thermal import (
    APPLE_SOURCE,
    ThermalReading,
    apple_pressure_level,
    apple_reading,
    cpufreq_reading,
    linux_frequency_cap,
    macos_speed_limit,
    pmset_reading,
    pressure_name,
    read_thermal,
    thermal_warning,
)

PMSET_THROTTLED = """Note: No thermal warning level has been recorded
Note: No performance warning level has been recorded
2026-11-22 10:00:00 +0000 CPU Power notify
\tCPU_Scheduler_Limit \t= 100
\tCPU_Available_CPUs \t= 8
\tCPU_Speed_Limit \t= 78
"""
PMSET_APPLE_SILICON = "Note: No CPU power status has been recorded\n"  # even while throttling


def test_pmset_speed_limit_is_parsed() -> None:
    assert macos_speed_limit(PMSET_THROTTLED) == 78
    assert macos_speed_limit("Note: No thermal warning level has been recorded\n") is None


def test_pressure_levels_are_named() -> None:
    assert [pressure_name(level) for level in range(5)] == ["nominal", "moderate", "heavy", "trapping", "sleeping"]
    assert pressure_name(7) == "unknown (7)"
    assert apple_reading(0) == ThermalReading(APPLE_SOURCE, "nominal", False)
    assert apple_reading(2) == ThermalReading(APPLE_SOURCE, "heavy", True)
    assert apple_reading(None).source.startswith("unavailable")


def test_apple_silicon_pressure_rising_during_sampling_is_a_warning() -> None:
    warning = thermal_warning(apple_reading(0), apple_reading(2))
    assert warning == (
        "thermal pressure nominal at the start, heavy at the end while sampling; "
        "let the device cool (or plug it in) and rerun"
    )
    assert thermal_warning(apple_reading(0), apple_reading(0)) is None


def test_pmset_says_nothing_on_apple_silicon_and_names_the_limit_on_intel() -> None:
    assert pmset_reading(PMSET_APPLE_SILICON) == ThermalReading("pmset -g therm", "no CPU speed limit recorded", False)
    intel = pmset_reading(PMSET_THROTTLED)
    assert intel.throttled and thermal_warning(intel, intel) == (
        "thermal throttling (CPU speed limit 78%) while sampling; let the device cool (or plug it in) and rerun"
    )


def test_linux_cpufreq_cap_from_a_sysfs_tree(tmp_path: Path) -> None:
    for name, scaling in (("policy0", 3_000_000), ("policy1", 2_400_000)):
        policy = tmp_path / name
        policy.mkdir()
        (policy / "cpuinfo_max_freq").write_text("3000000\n")
        (policy / "scaling_max_freq").write_text(f"{scaling}\n")
    assert linux_frequency_cap(tmp_path) == 0.8
    assert linux_frequency_cap(tmp_path / "absent") is None
    capped = cpufreq_reading(0.8)
    assert thermal_warning(cpufreq_reading(1.0), capped) == (
        "CPU frequency not capped at the start, capped at 80% of its maximum at the end "
        "(thermal or power policy); numbers are not comparable"
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads this Linux host's cpufreq tree")
def test_reading_on_linux_comes_from_cpufreq(tmp_path: Path) -> None:
    assert read_thermal(tmp_path).source == "unavailable: no linux cpufreq policies"
    (tmp_path / "policy0").mkdir()
    (tmp_path / "policy0" / "cpuinfo_max_freq").write_text("3000000\n")
    (tmp_path / "policy0" / "scaling_max_freq").write_text("3000000\n")
    assert read_thermal(tmp_path) == ThermalReading("linux cpufreq", "not capped", False)


@pytest.mark.skipif(
    sys.platform != "darwin" or platform.machine() != "arm64",
    reason="requires macOS on Apple silicon (libSystem notify)",
)
def test_thermal_pressure_level_is_read_through_notify() -> None:
    level = apple_pressure_level()
    assert level is not None and 0 <= level <= 4
    assert read_thermal().source == APPLE_SOURCE
