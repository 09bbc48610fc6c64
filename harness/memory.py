"""Process memory by phase: Linux `VmHWM` with a reset between phases; macOS `phys_footprint` (what
Activity Monitor and Xcode show) and its lifetime maximum through `proc_pid_rusage`; psutil RSS elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
RUSAGE_INFO_V4 = 4
PHYS_FOOTPRINT_OFFSET = 72  # rusage_info_v4: 16-byte uuid, then uint64 fields; ri_phys_footprint is field 7
LIFETIME_MAX_FOOTPRINT_OFFSET = 240  # ri_lifetime_max_phys_footprint, field 28


def parse_rusage_v4(raw: bytes) -> tuple[int, int]:
    """(phys_footprint, lifetime max phys_footprint) in bytes from a rusage_info_v4 buffer."""
    footprint = int.from_bytes(raw[PHYS_FOOTPRINT_OFFSET : PHYS_FOOTPRINT_OFFSET + 8], "little")
    peak = int.from_bytes(raw[LIFETIME_MAX_FOOTPRINT_OFFSET : LIFETIME_MAX_FOOTPRINT_OFFSET + 8], "little")
    return footprint, peak


def darwin_footprint() -> tuple[int, int] | None:
    """This process's footprint and its lifetime peak on macOS, or None where the call fails."""
    import ctypes
    import ctypes.util
    import os

    library = ctypes.util.find_library("proc") or ctypes.util.find_library("System")
    if library is None:
        return None
    buffer = ctypes.create_string_buffer(512)  # rusage_info_v4 is under 400 bytes
    if ctypes.CDLL(library).proc_pid_rusage(os.getpid(), RUSAGE_INFO_V4, buffer) != 0:
        return None
    return parse_rusage_v4(buffer.raw)


def _status_bytes(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakTracker:
    """Reads the current RSS and the peak since the last `reset()`.

    On Linux the kernel's high-water mark (`VmHWM`) is exact and writing 5 to `clear_refs` resets it to
    the current RSS. Where the reset is refused, peaks are lifetime peaks and `source` says so.
    """

    def __init__(self) -> None:
        self.linux = sys.platform.startswith("linux") and _STATUS.exists()
        self.darwin = sys.platform == "darwin" and darwin_footprint() is not None
        self.resettable = self.linux and self._try_reset()
        if self.linux:
            self.source = "linux VmHWM (reset per phase)" if self.resettable else "linux VmHWM (lifetime)"
        elif self.darwin:
            self.source = "macOS phys_footprint (lifetime max)"
        else:
            self.source = "psutil rss"

    def _try_reset(self) -> bool:
        try:
            _CLEAR_REFS.write_text("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.resettable:
            self._try_reset()

    def rss(self) -> int:
        """Resident memory now (macOS: the footprint, which counts compressed pages and not clean mmaps)."""
        if self.linux:
            value = _status_bytes("VmRSS")
            if value is not None:
                return value
        if self.darwin:
            footprint = darwin_footprint()
            if footprint is not None:
                return footprint[0]
        import psutil

        return int(psutil.Process().memory_info().rss)

    def peak(self) -> int:
        if self.linux:
            value = _status_bytes("VmHWM")
            if value is not None:
                return value
        if self.darwin:
            footprint = darwin_footprint()
            if footprint is not None:
                return footprint[1]
        return self.rss()
