"""Thermal throttling, where the OS reports it: a warning with its fix, never a silent slowdown.

macOS: `pmset -g therm` prints `CPU_Speed_Limit = N` (percent of full speed) once the system has
throttled. Linux: a cpufreq policy whose `scaling_max_freq` sits below `cpuinfo_max_freq` is capped.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CPUFREQ = Path("/sys/devices/system/cpu/cpufreq")


def macos_speed_limit(pmset_output: str) -> int | None:
    match = re.search(r"CPU_Speed_Limit\s*=\s*(\d+)", pmset_output)
    return int(match.group(1)) if match else None


def linux_frequency_cap(root: Path = CPUFREQ) -> float | None:
    """The lowest scaling_max_freq / cpuinfo_max_freq over the cpufreq policies, or None without them."""
    ratios = []
    for policy in sorted(root.glob("policy*")):
        try:
            ratios.append(
                int((policy / "scaling_max_freq").read_text()) / int((policy / "cpuinfo_max_freq").read_text())
            )
        except (OSError, ValueError, ZeroDivisionError):
            continue
    return min(ratios) if ratios else None


def thermal_warning(cpufreq: Path = CPUFREQ) -> str | None:
    if sys.platform == "darwin":
        try:
            output = subprocess.run(["pmset", "-g", "therm"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        limit = macos_speed_limit(output)
        if limit is not None and limit < 100:
            return f"thermal throttling: CPU speed limited to {limit}%; let the device cool (or plug it in) and rerun"
        return None
    cap = linux_frequency_cap(cpufreq)
    if cap is not None and cap < 0.999:
        return f"CPU frequency capped at {cap:.0%} of its maximum (thermal or power policy); numbers are not comparable"
    return None
