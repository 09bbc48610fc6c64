"""Content-addressed artifact cache.

The key covers the model's code and weights, its input spec, the variant's recipe and the versions of
the converting libraries. An entry is a directory of files plus a manifest with each file's sha256;
an entry whose files no longer match is deleted and rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from profiles.catalog import Variant
from profiles.paths import cache_root
from profiles.zoo import LoadedModel

KEY_PACKAGES = ("torch", "onnx", "onnxruntime", "onnxscript", "coremltools")
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


def _source_files(model: LoadedModel, factory: Any) -> list[Path]:
    import torch

    torch_dir = Path(torch.__file__).parent
    files = set()
    for obj in [factory, *(type(m) for m in model.module.modules())]:
        try:
            source = inspect.getsourcefile(obj)
        except TypeError:
            continue
        if source and not Path(source).is_relative_to(torch_dir):
            files.add(Path(source))
    return sorted(files)


def model_fingerprint(model: LoadedModel, factory: Any) -> str:
    """Hash of the model's code, weights and input spec."""
    digest = hashlib.sha256()
    for path in _source_files(model, factory):
        digest.update(path.read_bytes())
    for name, module in model.module.named_modules():  # which classes, not only which source files
        digest.update(f"{name}:{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, tensor in model.module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for tensor in model.example_inputs:
        digest.update(f"{tuple(tensor.shape)}:{tensor.dtype}".encode())
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def cache_key(fingerprint: str, variant: Variant, extra: dict[str, Any]) -> str:
    payload = {
        "model": fingerprint,
        "variant": variant.name,
        "format": variant.format,
        "recipe": variant.recipe,
        "versions": package_versions(),
        **extra,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


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


class ArtifactCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "artifacts"

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The stored metadata if the entry exists, its manifest is well formed and every file still
        matches its hash; any defect deletes the entry, so the caller rebuilds it."""
        entry = self.entry(key)
        manifest = entry / MANIFEST
        if not entry.exists():
            return None
        try:
            stored = json.loads(manifest.read_text())
            intact = _well_formed(stored) and all(
                file_sha256(entry / name) == sha for name, sha in stored["files"].items()
            )
        except (OSError, ValueError, RecursionError):
            intact = False
        if not intact:
            shutil.rmtree(entry, ignore_errors=True)
            return None
        info = dict(stored["info"])
        if "path" in info:  # where the entry is now (the cache directory may have moved)
            info["path"] = str(entry / Path(info["path"]).name)
        return info

    def store_skip(self, key: str, reason: str) -> None:
        """Remember that a recipe does not apply to this model (no files, just the reason)."""
        entry = self.entry(key)
        entry.mkdir(parents=True, exist_ok=True)
        (entry / MANIFEST).write_text(json.dumps({"files": {}, "info": {"skipped": reason}}))

    def staging(self, key: str) -> Path:
        path = self.root / "staging" / f"{key}-{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def store(self, key: str, staging: Path, main_file: str, info: dict[str, Any]) -> dict[str, Any]:
        """Hash every file of a finished staging directory (directories such as .mlpackage included),
        move it into place and return the metadata with its path, files, size and sha256."""
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
        (staging / MANIFEST).write_text(json.dumps({"files": hashes, "info": info}, indent=1))
        entry.parent.mkdir(parents=True, exist_ok=True)
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(staging, entry)
        return info
