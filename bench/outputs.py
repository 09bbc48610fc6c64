"""Output paths checked before any work: a run must not measure for minutes and then fail to write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from profiles.errors import ConfigError


def check_writable(path: Path | None, flag: str) -> None:
    """Raise `ConfigError` (one line: the flag, the path, why, the fix) unless a file can be written at
    `path`. The check creates the parent directories and a probe file there, as the real write will:
    permission bits alone say nothing for root or for /proc."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; give a file path, e.g. {path / 'results'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.probe.")
        os.close(fd)
        os.unlink(probe)
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{flag} {path}: cannot write there ({reason}); choose a writable path") from exc
