"""Content-addressed artifact cache.

The key covers what the model computes (`converters.fingerprint`: code, classes, weights and buffers,
attributes, the exported graph, the input spec), the variant's recipe, the calibration inputs where
the recipe uses them, the versions of the converting libraries, and `KEY_VERSION`. An entry is a
directory of files plus a manifest with each file's sha256 and the key's inputs; an entry whose files
no longer match is deleted and rebuilt, never loaded.

Changing what goes into the key means raising `KEY_VERSION`: it is hashed into every key, so entries
made under an older definition are never looked up again (they miss cleanly rather than mis-hit).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from converters.fingerprint import Fingerprint
from profiles.catalog import Variant
from profiles.paths import cache_root

KEY_VERSION = 2  # 1: code, classes, state dict, inputs; 2: + attributes, all buffers, the export graph
KEY_PACKAGES = ("torch", "onnx", "onnxruntime", "onnxscript", "coremltools")
FORMAT_PACKAGES = {"executorch": ("executorch", "torchao")}  # keyed only for that format's artifacts
# A format's artifact form, keyed only for that format: changed when its converter writes a different program
# for the same model and recipe, so the older programs miss (executorch 2: a decoder's static KV cache).
FORMAT_FORMS = {"executorch": 2}
MANIFEST = "manifest.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def combined_sha256(file_hashes: dict[str, str]) -> str:
    """One hash for an artifact made of several files (an ONNX graph and its external data)."""
    return hashlib.sha256(json.dumps(sorted(file_hashes.items())).encode()).hexdigest()


def arrays_sha256(arrays: tuple[Any, ...]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.shape}:{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    versions = {}
    for name in (*KEY_PACKAGES, *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def key_inputs(fingerprint: Fingerprint, variant: Variant, extra: dict[str, Any]) -> dict[str, Any]:
    """Everything the key hashes, readable: kept in the entry's manifest to explain hits and misses."""
    return {
        "key_version": KEY_VERSION,
        "model": fingerprint.digest,
        "variant": variant.name,
        "format": variant.format,
        "recipe": variant.recipe,
        "versions": package_versions(FORMAT_PACKAGES.get(variant.format, ())),
        **({"form": FORMAT_FORMS[variant.format]} if variant.format in FORMAT_FORMS else {}),
        **extra,
    }


def cache_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def explain_miss(inputs: dict[str, Any], fingerprint: Fingerprint, earlier: dict[str, Any] | None) -> str:
    """Why a key missed, against the most recent entry for the same model name and variant."""
    if earlier is None:
        return "miss: no earlier artifact of this model and variant in the cache"
    before_key, before_model = earlier.get("key", {}), earlier.get("model", {})
    reasons = [
        f"{name} changed" for name in ("key_version", "recipe", "versions", "calibration")
        if before_key.get(name) != inputs.get(name)
    ]  # fmt: skip
    before_parts = before_model.get("inputs", {})
    reasons += [
        f"model {part} changed" for part, value in fingerprint.inputs.items() if before_parts.get(part) != value
    ]
    before_attributes = before_model.get("attributes", {})
    changed = [
        f"{name}: {before_attributes.get(name, '(absent)')} -> {value}"
        for name, value in fingerprint.attributes.items()
        if before_attributes.get(name) != value
    ]
    changed += [
        f"{name}: {value} -> (absent)"
        for name, value in before_attributes.items()
        if name not in fingerprint.attributes
    ]
    if changed:
        reasons.append(
            "attributes " + "; ".join(changed[:5]) + (f"; and {len(changed) - 5} more" if len(changed) > 5 else "")
        )
    return "miss: " + (", ".join(reasons) if reasons else "the earlier entry was removed or damaged")


def _well_formed(stored: Any) -> bool:
    """A manifest is `{"files": {relative name: sha256}, "info": {...}}` whose info names a stored skip,
    or the path of a main file that is among its files."""
    if (
        not isinstance(stored, dict)
        or not isinstance(stored.get("files"), dict)
        or not isinstance(stored.get("info"), dict)
    ):
        return False
    files, info = stored["files"], stored["info"]
    names_ok = all(
        isinstance(name, str)
        and name
        and not Path(name).is_absolute()
        and ".." not in Path(name).parts
        and isinstance(sha, str)
        and len(sha) == 64
        for name, sha in files.items()
    )
    if not names_ok:
        return False
    if "skipped" in info:
        return isinstance(info["skipped"], str) and not files
    path = info.get("path")
    return bool(files) and isinstance(path, str) and Path(path).name in {Path(name).parts[0] for name in files}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale_staging(staging_root: Path) -> None:
    """Remove staging directories (`<key>-<pid>`) whose process is gone: a conversion interrupted by
    Ctrl-C or a kill leaves its half-written files there, and nothing else would ever remove them. An
    entry of a live process (another bench converting now) is left alone."""
    try:
        entries = list(staging_root.iterdir())
    except OSError:
        return
    for entry in entries:
        _, _, pid = entry.name.rpartition("-")
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


class ArtifactCache:
    def __init__(self, root: Path | None = None) -> None:
        """Opening the cache cleans what dead conversions left in its staging area."""
        self.root = root or cache_root() / "artifacts"
        clean_stale_staging(self.root / "staging")

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def examine(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """(stored metadata, None) if the entry exists, its manifest is well formed and every file still
        matches its hash; any defect deletes the entry, so the caller rebuilds it, and comes back as
        (None, what was wrong): a rebuild explains itself by the damage, not as a first build."""
        entry = self.entry(key)
        manifest = entry / MANIFEST
        if not entry.exists():
            return None, None
        damage = None
        try:
            stored = json.loads(manifest.read_text())
            if not _well_formed(stored):
                damage = "its manifest is malformed"
            else:
                changed = [name for name, sha in stored["files"].items() if file_sha256(entry / name) != sha]
                damage = f"{', '.join(changed)} no longer matches its hash" if changed else None
        except (OSError, ValueError, RecursionError) as exc:
            damage = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if damage is not None:
            shutil.rmtree(entry, ignore_errors=True)
            return None, damage
        info = dict(stored["info"])
        if "path" in info:  # where the entry is now (the cache directory may have moved)
            info["path"] = str(entry / Path(info["path"]).name)
        return info, None

    def store_skip(self, key: str, reason: str, about: dict[str, Any]) -> None:
        """Remember that a recipe does not apply to this model (no files, just the reason)."""
        entry = self.entry(key)
        entry.mkdir(parents=True, exist_ok=True)
        (entry / MANIFEST).write_text(json.dumps({"files": {}, "info": {"skipped": reason}, **about}))

    def latest_for(self, model_name: str, variant: str) -> dict[str, Any] | None:
        """The manifest of the most recently written entry for a model name and variant, or None."""
        found: list[tuple[float, dict[str, Any]]] = []
        for manifest in self.root.glob(f"*/*/{MANIFEST}"):
            try:
                stored = json.loads(manifest.read_text())
            except (OSError, ValueError, RecursionError):
                continue
            if not isinstance(stored, dict) or not isinstance(stored.get("model"), dict):
                continue
            if stored["model"].get("name") == model_name and stored.get("key", {}).get("variant") == variant:
                found.append((manifest.stat().st_mtime, stored))
        return max(found, key=lambda pair: pair[0])[1] if found else None

    def staging(self, key: str) -> Path:
        path = self.root / "staging" / f"{key}-{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def store(
        self, key: str, staging: Path, main_file: str, info: dict[str, Any], about: dict[str, Any]
    ) -> dict[str, Any]:
        """Hash every file of a finished staging directory (directories such as .mlpackage included),
        move it into place and return the metadata with its path, files, size and sha256. `about` (the
        key's inputs and the model's fingerprint summary) is kept in the manifest beside them."""
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        hashes = {str(p.relative_to(staging)): file_sha256(p) for p in files}
        entry = self.entry(key)
        info = {
            **info,
            "path": str(entry / main_file),
            "files": sorted(hashes),
            "size_bytes": sum(p.stat().st_size for p in files),
            "sha256": combined_sha256(hashes),
            "cache_key": key,
        }
        (staging / MANIFEST).write_text(json.dumps({"files": hashes, "info": info, **about}, indent=1, default=str))
        entry.parent.mkdir(parents=True, exist_ok=True)
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(staging, entry)
        return info
