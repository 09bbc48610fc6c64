"""Output paths checked before any work: a run must not measure for minutes and then fail to write,
nor write one output over another or over one of its own inputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from profiles.errors import ConfigError
from profiles.paths import CACHE_ENV, cache_root


def _probe(directory: Path) -> None:
    """Create `directory` (and its parents) and a file in it, as a real write will: permission bits
    alone say nothing for root, for /proc or for a read-only mount."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=directory, prefix=".bench-probe.")
    os.close(fd)
    os.unlink(probe)


def check_writable(path: Path | None, flag: str) -> None:
    """Raise `ConfigError` (one line: the flag, the path, why, the fix) unless a file can be written at
    `path`."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; give a file path, e.g. {path / 'results'}")
    try:
        _probe(path.parent)
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{flag} {path}: cannot write there ({reason}); choose a writable path") from exc


def check_directory(path: Path | None, flag: str) -> None:
    """Raise `ConfigError` unless `path` is (or can be made) a directory that files can be written in."""
    if path is not None:
        _require_directory(
            path, f"{flag} {path}", f"give a directory, e.g. {path}-artifacts", "choose a writable directory"
        )


def check_cache() -> None:
    """Raise `ConfigError` unless the cache (weights, artifacts, worker logs) can be written: every
    command that builds or measures writes there first."""
    root = cache_root()
    where = f"{CACHE_ENV}={root}" if os.environ.get(CACHE_ENV) else f"the cache {root}"
    fix = f"point {CACHE_ENV} at a writable directory"
    _require_directory(root, where, fix, fix)


def _require_directory(path: Path, where: str, if_file: str, if_unwritable: str) -> None:
    """`ConfigError` naming `where` and the fix when `path` is a file or no file can be written in it."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{where}: is a file, not a directory; {if_file}")
    try:
        _probe(path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{where}: cannot write there ({reason}); {if_unwritable}") from exc


def _same(one: Path, other: Path) -> bool:
    """Whether two paths name one file: by identity where both exist (a hard link, a symlink, `..`),
    else by their resolved absolute paths."""
    if one.exists() and other.exists():
        return os.path.samefile(one, other)
    return one.resolve() == other.resolve()


def check_distinct(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """Raise `ConfigError` when two outputs name one file, or an output names an input: the later
    write would silently destroy the other file (results replaced by HTML, a baseline or a store
    overwritten by the results)."""
    named = [(flag, path) for flag, path in outputs.items() if path is not None]
    sources = [(flag, path) for flag, path in inputs.items() if path is not None]
    for index, (flag, path) in enumerate(named):
        for other_flag, other in named[index + 1 :]:
            if _same(path, other):
                raise ConfigError(
                    f"{flag} {path} and {other_flag} {other} are the same file ({path.resolve()}):"
                    " one would overwrite the other; give each output its own path"
                )
        for input_flag, source in sources:
            if _same(path, source):
                raise ConfigError(
                    f"{flag} {path} is the {input_flag} {source} ({path.resolve()}): writing it would destroy"
                    " that input; give the output another path"
                )
