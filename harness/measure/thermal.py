"""Thermal throttling, where the OS reports it: read at the start and end of sampling, and a warning with
its fix, never a silent slowdown.

Apple silicon: the thermal pressure level from libSystem's notify API (`pmset -g therm` prints nothing
useful there, even while throttling). Intel Macs: `pmset -g therm` prints `CPU_Speed_Limit = N` (percent
of full speed) once the system has throttled. Linux: a cpufreq policy whose `scaling_max_freq` sits
below `cpuinfo_max_freq` is capped.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CPUFREQ = Path("/sys/devices/system/cpu/cpufreq")
PRESSURE_NOTIFICATION = b"com.apple.system.thermalpressurelevel"
PRESSURE_LEVELS = ("nominal", "moderate", "heavy", "trapping", "sleeping")
APPLE_SOURCE = "macOS thermal pressure level (notify)"
PMSET_SOURCE = "pmset -g therm"
CPUFREQ_SOURCE = "linux cpufreq"


@dataclass(frozen=True)
class ThermalReading:
    """One look at the thermal state: `level` as the OS names it, `throttled` when it slows the machine."""

    source: str
    level: str | None
    throttled: bool


def pressure_name(level: int) -> str:
    return PRESSURE_LEVELS[level] if 0 <= level < len(PRESSURE_LEVELS) else f"unknown ({level})"


def apple_pressure_level() -> int | None:
    """The thermal pressure level (0 nominal .. 4 sleeping) through notify_register_check and
    notify_get_state on libSystem; None where the calls fail."""
    import ctypes

    system = ctypes.CDLL("/usr/lib/libSystem.B.dylib")
    system.notify_register_check.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    system.notify_register_check.restype = ctypes.c_uint32
    system.notify_get_state.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_uint64)]
    system.notify_get_state.restype = ctypes.c_uint32
    system.notify_cancel.argtypes = [ctypes.c_int]
    system.notify_cancel.restype = ctypes.c_uint32
    token = ctypes.c_int()
    if system.notify_register_check(PRESSURE_NOTIFICATION, ctypes.byref(token)) != 0:
        return None
    state = ctypes.c_uint64()
    status = system.notify_get_state(token, ctypes.byref(state))
    system.notify_cancel(token)
    return int(state.value) if status == 0 else None


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


def apple_reading(level: int | None) -> ThermalReading:
    if level is None:
        return ThermalReading(f"unavailable: {APPLE_SOURCE} failed", None, False)
    return ThermalReading(APPLE_SOURCE, pressure_name(level), level > 0)


def pmset_reading(pmset_output: str | None) -> ThermalReading:
    if pmset_output is None:
        return ThermalReading(f"unavailable: {PMSET_SOURCE} did not run", None, False)
    limit = macos_speed_limit(pmset_output)
    if limit is None:
        return ThermalReading(PMSET_SOURCE, "no CPU speed limit recorded", False)
    return ThermalReading(PMSET_SOURCE, f"CPU speed limit {limit}%", limit < 100)


def cpufreq_reading(cap: float | None) -> ThermalReading:
    if cap is None:
        return ThermalReading(f"unavailable: no {CPUFREQ_SOURCE} policies", None, False)
    if cap >= 0.999:
        return ThermalReading(CPUFREQ_SOURCE, "not capped", False)
    return ThermalReading(CPUFREQ_SOURCE, f"capped at {cap:.0%} of its maximum", True)


def _pmset() -> str | None:
    try:
        return subprocess.run(["pmset", "-g", "therm"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None


def read_thermal(cpufreq: Path = CPUFREQ) -> ThermalReading:
    """The thermal state now, from the source this host has."""
    if sys.platform == "darwin":
        return apple_reading(apple_pressure_level()) if platform.machine() == "arm64" else pmset_reading(_pmset())
    return cpufreq_reading(linux_frequency_cap(cpufreq))


def thermal_warning(start: ThermalReading, end: ThermalReading) -> str | None:
    """A warning naming the levels when either reading shows throttling, else None."""
    if not (start.throttled or end.throttled):
        return None
    levels = start.level if start.level == end.level else f"{start.level} at the start, {end.level} at the end"
    if end.source == APPLE_SOURCE:
        return f"thermal pressure {levels} while sampling; let the device cool (or plug it in) and rerun"
    if end.source == PMSET_SOURCE:
        return f"thermal throttling ({levels}) while sampling; let the device cool (or plug it in) and rerun"
    return f"CPU frequency {levels} (thermal or power policy); numbers are not comparable"
