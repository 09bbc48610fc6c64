"""Process memory by phase: Linux `VmHWM` with a reset between phases, psutil RSS elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


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
        self.resettable = self.linux and self._try_reset()
        if self.linux:
            self.source = "linux VmHWM (reset per phase)" if self.resettable else "linux VmHWM (lifetime)"
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
        if self.linux:
            value = _status_bytes("VmRSS")
            if value is not None:
                return value
        import psutil

        return int(psutil.Process().memory_info().rss)

    def peak(self) -> int:
        if self.linux:
            value = _status_bytes("VmHWM")
            if value is not None:
                return value
        return self.rss()
