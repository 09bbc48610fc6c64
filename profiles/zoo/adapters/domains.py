"""The offline data each zoo adapter is trained and judged on: its own domain, with a held-out split.

- `python_source`: the standard library's own Python source (`Lib/*.py` of the running interpreter, files
  sorted by name, up to `SOURCE_BYTES`); every 10th file is held out, so no held-out window shares a file
  with training. Code, not the prose `tiny_decoder` was trained on.
- `unicode_names`: the Unicode character names `unicodedata` holds for U+0020..U+2FFF, one per line, in
  blocks of `NAMES_PER_BLOCK` consecutive code points; every 10th block is held out. Upper-case words in
  a tiny vocabulary: a domain far from both prose and code.
- `rotated`: scikit-learn's digits (the split `digits_cnn` uses) turned a quarter turn: the same labels,
  a task the base model was never shown.

Every corpus is bytes of text (the decoder's tokens) or arrays, built the same on every machine that has
the same Python; the adapters' cache key hashes what was built (`profiles.zoo.adapters.training`).
"""

from __future__ import annotations

import sysconfig
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

HELD_OUT_EVERY = 10
SOURCE_BYTES = 1_500_000
NAMES_PER_BLOCK = 32


@dataclass(frozen=True)
class TextDomain:
    train: np.ndarray  # uint8 bytes: the decoder's tokens
    held_out: np.ndarray
    source: str


def _split(parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    train = [p for i, p in enumerate(parts) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    held = [p for i, p in enumerate(parts) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]

    def encode(chunks: list[str]) -> np.ndarray:
        return np.frombuffer("\n\n".join(chunks).encode("utf-8"), dtype=np.uint8).copy()

    return encode(train), encode(held)


@lru_cache(maxsize=1)
def python_source() -> TextDomain:
    files, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if total + len(text) > SOURCE_BYTES:
            break
        files.append(text)
        total += len(text)
    train, held = _split(files)
    return TextDomain(train, held, f"the standard library's Lib/*.py ({len(files)} files, every 10th held out)")


@lru_cache(maxsize=1)
def unicode_names() -> TextDomain:
    names = [unicodedata.name(chr(code), "") for code in range(0x20, 0x3000)]
    named = [name for name in names if name]
    blocks = ["\n".join(named[i : i + NAMES_PER_BLOCK]) for i in range(0, len(named), NAMES_PER_BLOCK)]
    train, held = _split(blocks)
    return TextDomain(train, held, f"unicodedata names U+0020..U+2FFF ({len(named)} names, every 10th block held out)")


TEXT_DOMAINS = {"python_source": python_source, "unicode_names": unicode_names}


def rotate(images: np.ndarray) -> np.ndarray:
    """A quarter turn of each N x C x H x W image, contiguous (the formats take no negative strides)."""
    return np.ascontiguousarray(np.rot90(images, k=1, axes=(2, 3)))
