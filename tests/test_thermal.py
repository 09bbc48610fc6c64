from __future__ import annotations

from pathlib import Path

from harness.thermal import linux_frequency_cap, macos_speed_limit, thermal_warning

PMSET_THROTTLED = """Note: No thermal warning level has been recorded
Note: No performance warning level has been recorded
2026-11-22 10:00:00 +0000 CPU Power notify
\tCPU_Scheduler_Limit \t= 100
\tCPU_Available_CPUs \t= 8
\tCPU_Speed_Limit \t= 78
"""


def test_pmset_speed_limit_is_parsed() -> None:
    assert macos_speed_limit(PMSET_THROTTLED) == 78
    assert macos_speed_limit("Note: No thermal warning level has been recorded\n") is None


def test_linux_cpufreq_cap_from_a_sysfs_tree(tmp_path: Path) -> None:
    for name, scaling in (("policy0", 3_000_000), ("policy1", 2_400_000)):
        policy = tmp_path / name
        policy.mkdir()
        (policy / "cpuinfo_max_freq").write_text("3000000\n")
        (policy / "scaling_max_freq").write_text(f"{scaling}\n")
    assert linux_frequency_cap(tmp_path) == 0.8
    warning = thermal_warning(tmp_path)
    assert (warning is not None and warning.startswith("CPU frequency capped at 80%")) or __import__(
        "sys"
    ).platform == "darwin"
    assert linux_frequency_cap(tmp_path / "absent") is None
