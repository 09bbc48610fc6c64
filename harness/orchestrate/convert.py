"""`bench convert`: build every model x variant artifact of a profile (cache first), no measuring."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from harness.orchestrate.prepare import PrepareRequest, check_user_models, prepare_many
from harness.process.messages import ArtifactBuilt
from harness.process.scratch import run_environment
from harness.results.schema import ArtifactInfo, ConvertRow
from profiles.catalog import VARIANTS
from profiles.errors import ProtocolError
from profiles.paths import cache_root, file_name
from profiles.schema import ResolvedProfile
from profiles.zoo import resolve_model


def convert_profile(
    resolved: ResolvedProfile, out_dir: Path | None, on_stage: Callable[[str], None]
) -> tuple[list[ConvertRow], float]:
    """Rows for every model x variant, and the wall time it took. With `out_dir`, each built artifact's
    files are copied to `out_dir/MODEL/VARIANT/`."""
    profile = resolved.profile
    models = [resolve_model(ref) for ref in profile.models]
    logs = cache_root() / "logs" / f"convert-{int(time.time())}"
    logs.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[ConvertRow]] = {spec.ref: [] for spec in models}  # in the profile's order
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as work, run_environment(Path(work)):
        unimportable = check_user_models([spec.ref for spec in models], profile.measure.timeout_s, logs)
        for spec in models:
            if spec.ref in unimportable:
                rows[spec.ref] = [
                    ConvertRow(spec.name, name, VARIANTS[name].format, "failed", unimportable[spec.ref], ArtifactInfo())
                    for name in profile.variants
                ]
        requests = [
            PrepareRequest(
                spec.ref,
                list(profile.variants),
                logs / f"{file_name(spec.name)}.log",
                lambda stage, name=spec.name: on_stage(f"{name}: {stage}"),
            )
            for spec in models
            if spec.ref not in unimportable
        ]
        names = {spec.ref: spec.name for spec in models}
        with closing(prepare_many(requests, Path(work), profile, with_reference=False)) as ready:
            for request, prepared in ready:
                if prepared.rejected:
                    raise ProtocolError(prepared.rejected)
                model_name = names[request.model_ref]
                for name in profile.variants:
                    message = prepared.artifacts.get(name, ArtifactBuilt(name, "failed", prepared.failure))
                    artifact = message.info or ArtifactInfo()
                    status, reason = message.status, message.reason
                    rows[request.model_ref].append(
                        ConvertRow(model_name, name, VARIANTS[name].format, status, reason, artifact)
                    )
                    if out_dir is not None and artifact.path:
                        _export(artifact, out_dir / file_name(model_name) / name)
    return [row for model_rows in rows.values() for row in model_rows], time.perf_counter() - started


def _export(artifact: ArtifactInfo, target: Path) -> None:
    source = Path(artifact.path or "").parent
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for relative in artifact.files:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, target / relative)
