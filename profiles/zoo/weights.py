"""Trained zoo weights in the cache: read back when intact, rebuilt when not.

A weights file can be cut short (a full disk, a process killed mid-write by an older bench, a copy
interrupted) or not fit the model any more. torch then raises from deep inside its zip reader, naming no
file; here that file is named in a warning, deleted, and the caller trains and writes it again.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from profiles.errors import first_line
from profiles.paths import save_torch

log = logging.getLogger(__name__)

DAMAGE = (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile)


def load_cached(path: Path, model: Any) -> bool:
    """Load the state dict at `path` into `model`; False when there is none or it is damaged (then it is
    deleted, so the caller's rebuild writes a fresh one)."""
    import torch

    if not path.exists():
        return False
    try:
        model.load_state_dict(torch.load(path, weights_only=True))
    except DAMAGE as exc:
        log.warning("cached weights %s are damaged (%s): rebuilding them", path, first_line(exc))
        path.unlink(missing_ok=True)
        return False
    return True


def save_cached(path: Path, model: Any) -> None:
    """Write the state dict through a temp file of this process, then rename: a reader sees the whole
    file or none, even with two processes training at once."""

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_torch(model.state_dict(), tmp)
    tmp.replace(path)
