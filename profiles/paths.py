"""Where the project keeps what it builds: trained weights and converted artifacts."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ONDEVICE_BENCH_CACHE"


def file_name(name: str) -> str:
    """A model name (`pkg.mod:factory`, `path/to/file.py:factory`) made safe as one path component."""
    return name.replace(":", "_").replace("/", "_")


def cache_root() -> Path:
    """The user cache dir, or `$ONDEVICE_BENCH_CACHE` when set (tests and CI point it at a temp dir)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ondevice-bench"))
