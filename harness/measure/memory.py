"""Process memory by phase: Linux `VmHWM` with a reset between phases; macOS `phys_footprint` (what
Activity Monitor and Xcode show) with its interval maximum reset between phases, plus the Neural Engine's
memory where macOS reports it; psutil RSS elsewhere."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
RUSAGE_INFO_V4 = 4
RUSAGE_INFO_V6 = 6
# rusage_info_v6 exists from macOS 13 (xnu-8792), but xnu fills its neural fields only from xnu-11215
# (macOS 15): before that they read 0, which is missing, not zero. So the gate is the macOS version.
NEURAL_FOOTPRINT_MACOS = (15,)
# Byte offsets in struct rusage_info_v4/v6 (xnu bsd/sys/resource.h): a 16-byte uuid, then uint64 fields.
PHYS_FOOTPRINT_OFFSET = 72  # ri_phys_footprint
LIFETIME_MAX_FOOTPRINT_OFFSET = 240  # ri_lifetime_max_phys_footprint
INTERVAL_MAX_FOOTPRINT_OFFSET = 280  # ri_interval_max_phys_footprint, reset by proc_reset_footprint_interval
NEURAL_FOOTPRINT_OFFSET = 368  # ri_neural_footprint (v6): Neural Engine memory, charged outside phys_footprint
# ri_interval_max_neural_footprint (v6): its peak since proc_reset_footprint_interval, reset with byte 280
INTERVAL_MAX_NEURAL_OFFSET = 384


@dataclass(frozen=True)
class Footprint:
    """One rusage reading in bytes; the neural fields are None where macOS does not fill them (before 15)."""

    current: int
    lifetime_peak: int
    interval_peak: int
    neural: int | None
    neural_interval_peak: int | None = None

    def now(self) -> int:
        return self.current + (self.neural or 0)

    def peak(self, per_phase: bool) -> int:
        """The phase peak: the footprint's and the Neural Engine's interval maxima since the last reset
        (the current neural footprint would miss what was freed before the read); without a reset, the
        lifetime footprint peak plus the neural footprint now, as no lifetime neural peak is read."""
        if per_phase:
            return self.interval_peak + (self.neural_interval_peak or 0)
        return self.lifetime_peak + (self.neural or 0)


def _field(raw: bytes, offset: int) -> int:
    return int.from_bytes(raw[offset : offset + 8], "little")


def parse_rusage(raw: bytes, neural: bool) -> Footprint:
    """The footprint fields of a rusage_info_v4 buffer, and with `neural` (a rusage_info_v6 buffer on
    macOS 15 or later) the Neural Engine's current footprint and interval peak."""
    return Footprint(
        current=_field(raw, PHYS_FOOTPRINT_OFFSET),
        lifetime_peak=_field(raw, LIFETIME_MAX_FOOTPRINT_OFFSET),
        interval_peak=_field(raw, INTERVAL_MAX_FOOTPRINT_OFFSET),
        neural=_field(raw, NEURAL_FOOTPRINT_OFFSET) if neural else None,
        neural_interval_peak=_field(raw, INTERVAL_MAX_NEURAL_OFFSET) if neural else None,
    )


def neural_fields_filled(macos: tuple[int, ...]) -> bool:
    """Whether xnu fills rusage_info_v6's neural fields on this macOS (15 and later)."""
    return macos >= NEURAL_FOOTPRINT_MACOS


def darwin_source(per_phase: bool, neural: bool) -> str:
    peak = "interval max, reset per phase" if per_phase else "lifetime max"
    if neural and per_phase:
        return f"macOS phys_footprint ({peak}) + ri_interval_max_neural_footprint (rusage v6)"
    if neural:
        return f"macOS phys_footprint ({peak}) + ri_neural_footprint now (rusage v6)"
    return f"macOS phys_footprint ({peak}); Neural Engine memory not included (needs macOS 15)"


def _libproc() -> Any:
    import ctypes
    import ctypes.util

    library = ctypes.util.find_library("proc") or ctypes.util.find_library("System")
    return ctypes.CDLL(library) if library else None


def darwin_footprint(flavor: int) -> Footprint | None:
    """This process's footprint on macOS, or None where the call fails (flavor 6 only on macOS 15+)."""
    import ctypes
    import os

    library = _libproc()
    if library is None:
        return None
    buffer = ctypes.create_string_buffer(512)  # rusage_info_v6 is 464 bytes
    if library.proc_pid_rusage(os.getpid(), flavor, buffer) != 0:
        return None
    return parse_rusage(buffer.raw, flavor == RUSAGE_INFO_V6)


def reset_footprint_interval() -> bool:
    """Start a new interval for `ri_interval_max_phys_footprint` (libproc, allowed for our own pid)."""
    import os

    library = _libproc()
    return library is not None and library.proc_reset_footprint_interval(os.getpid()) == 0


def _status_bytes(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakTracker:
    """Reads the current memory and the peak since the last `reset()`.

    On Linux the kernel's high-water mark (`VmHWM`) is exact and writing 5 to `clear_refs` resets it to
    the current RSS. On macOS `proc_reset_footprint_interval` starts a new interval maximum of the
    footprint. Where the reset is refused, peaks are lifetime peaks and `source` says so.
    """

    def __init__(self) -> None:
        self.linux = sys.platform.startswith("linux") and _STATUS.exists()
        self.flavor = self._darwin_flavor() if sys.platform == "darwin" else None
        if self.linux:
            self.resettable = self._try_reset()
            self.source = "linux VmHWM (reset per phase)" if self.resettable else "linux VmHWM (lifetime)"
        elif self.flavor is not None:
            self.resettable = reset_footprint_interval()
            self.source = darwin_source(self.resettable, self.flavor == RUSAGE_INFO_V6)
        else:
            self.resettable = False
            self.source = "psutil rss"

    @staticmethod
    def _darwin_flavor() -> int | None:
        from harness.host import macos_version

        flavors = [RUSAGE_INFO_V6, RUSAGE_INFO_V4] if neural_fields_filled(macos_version()) else [RUSAGE_INFO_V4]
        return next((f for f in flavors if darwin_footprint(f) is not None), None)

    def _try_reset(self) -> bool:
        try:
            _CLEAR_REFS.write_text("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if not self.resettable:
            return
        if self.linux:
            self._try_reset()
        else:
            reset_footprint_interval()

    def _footprint(self) -> Footprint | None:
        return darwin_footprint(self.flavor) if self.flavor is not None else None

    def rss(self) -> int:
        """Resident memory now (macOS: the footprint, which counts compressed pages and not clean mmaps,
        plus the Neural Engine's memory where reported)."""
        if self.linux:
            value = _status_bytes("VmRSS")
            if value is not None:
                return value
        footprint = self._footprint()
        if footprint is not None:
            return footprint.now()
        import psutil

        return int(psutil.Process().memory_info().rss)

    def peak(self) -> int:
        if self.linux:
            value = _status_bytes("VmHWM")
            if value is not None:
                return value
        footprint = self._footprint()
        if footprint is not None:
            return footprint.peak(self.resettable)
        return self.rss()
