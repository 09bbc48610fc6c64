"""Where the project keeps what it builds: trained weights and converted artifacts."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

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


def save_torch(obj: Any, path: Path) -> None:
    """`torch.save` through a buffer, then one ordinary write: a full disk or a read-only folder is an
    `OSError` that names the file and the cause (`[Errno 28] No space left on device: '.../weights.pt'`),
    where torch's own writer reports `inline_container.cc:672 ... unexpected pos`, naming neither."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    try:
        with open(path, "wb") as out:
            out.write(buffer.getbuffer())
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
