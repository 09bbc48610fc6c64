"""`bench ab A B`: two variants of one model, or two artifact files, paired in the same processes.

A `.pte` without the converter's `delegation.json` beside it is staged once, in a temporary directory
with notes read from the program (`stage_programs`), so that no measuring process pays for reading it.

Two artifact files for one runtime are taken for two builds of one variant (an export before and after
a change) and paired as the `--baseline` gate pairs them: no lead-in, the median of per-round ratios,
the statistic the validation study checked. Anything else (two catalog variants, a file against a
variant, two runtimes) is paired as different variants: with a lead-in and the fastest-third statistic
(`harness.pairing.pairing_settings`)."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from converters.executorch import DELEGATION_FILE
from harness.backends.registry import BACKENDS
from harness.isolation import run_isolated
from harness.paired import Arm
from harness.pairing import compare_series, pairing_settings
from harness.prepare import check_user_models, prepare_isolated
from harness.schema import PairedComparison
from harness.slowdown import requested_slowdown
from harness.worker import WorkerSpec
from profiles.catalog import FORMAT_BACKEND, VARIANTS
from profiles.errors import ConfigError, ModelError, ProtocolError
from profiles.paths import cache_root, file_name
from profiles.schema import ResolvedProfile
from profiles.zoo import resolve_model

SUFFIX_BACKEND = {".onnx": "onnxruntime", ".mlpackage": "coreml", ".mlmodel": "coreml", ".pte": "executorch"}


@dataclass(frozen=True)
class Side:
    label: str
    variant: str | None  # a catalog variant to build, or None for an artifact file
    path: str | None
    backend: str


def side_of(text: str) -> Side:
    """A catalog variant name, or the path of an artifact file whose suffix names its runtime."""
    if text in VARIANTS:
        return Side(text, text, None, FORMAT_BACKEND[VARIANTS[text].format])
    path = Path(text)
    if not path.exists():
        raise ConfigError(f"'{text}': neither a variant ({', '.join(VARIANTS)}) nor an artifact file that exists")
    backend = SUFFIX_BACKEND.get(path.suffix)
    if backend is None:
        raise ConfigError(f"{text}: cannot tell its runtime; expected one of {', '.join(SUFFIX_BACKEND)}")
    return Side(text, None, str(path.resolve()), backend)


def two_builds(sides: list[Side]) -> bool:
    """Whether A and B are two builds of one variant: two artifact files for the same runtime."""
    return all(side.variant is None for side in sides) and sides[0].backend == sides[1].backend


def read_program_notes(paths: list[str], send: Callable[[Any], None]) -> None:
    """Worker: the notes of each program (`harness.backends.executorch.program_notes`), as one list."""
    from harness.backends.executorch import program_notes

    send([program_notes(Path(path)) for path in paths])


def stage_programs(sides: list[Side], work: Path, timeout_s: float, log: Path) -> list[Side]:
    """The sides, each ExecuTorch program without `delegation.json` beside it linked into its own
    directory under `work` with notes read from the program (one isolated worker for all)."""
    bare = [i for i, s in enumerate(sides) if s.backend == "executorch" and s.path and not _has_notes(s.path)]
    if not bare:
        return sides
    outcome = run_isolated(read_program_notes, ([sides[i].path for i in bare],), timeout_s, None, log)
    notes = outcome.first(list)
    if notes is None:
        raise ConfigError(f"{sides[bare[0]].label}: cannot read the program: {outcome.failure} (log: {log})")
    staged = list(sides)
    for i, written in zip(bare, notes, strict=True):
        directory = work / f"program-{i}"
        directory.mkdir()
        (directory / "model.pte").symlink_to(str(sides[i].path))
        (directory / DELEGATION_FILE).write_text(json.dumps(written))
        staged[i] = replace(sides[i], path=str(directory / "model.pte"))
    return staged


def _has_notes(path: str) -> bool:
    return (Path(path).parent / DELEGATION_FILE).exists()


def run_ab(
    resolved: ResolvedProfile, a_text: str, b_text: str, device: str, on_stage: Callable[[str], None]
) -> tuple[PairedComparison, list[str]]:
    """B against A on `device`, for the profile's one model; and the labels of A and B."""
    profile = resolved.profile
    if len(profile.models) != 1:
        raise ConfigError(f"bench ab pairs artifacts of one model; got {len(profile.models)}: pass one -m MODEL")
    sides = [side_of(a_text), side_of(b_text)]
    for side in sides:
        reason = BACKENDS[side.backend]().available(device)
        if reason:
            raise ConfigError(f"{side.label} on {device}: {reason}")
    spec = resolve_model(profile.models[0])
    logs = cache_root() / "logs" / f"ab-{int(time.time())}"
    logs.mkdir(parents=True, exist_ok=True)
    failures = check_user_models([spec.ref], profile.measure.timeout_s, logs)
    if spec.ref in failures:
        raise ModelError(f"{spec.ref}: {failures[spec.ref]}")
    variants = [side.variant for side in sides if side.variant is not None]
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as work:
        prepared = prepare_isolated(
            spec.ref, variants, Path(work), profile, logs / f"{file_name(spec.name)}.log", on_stage
        )
        if prepared.rejected:
            raise ProtocolError(prepared.rejected)
        if prepared.failure:
            raise ModelError(f"{spec.ref}: {prepared.failure}")
        sides = stage_programs(sides, Path(work), profile.measure.timeout_s, logs / "program-notes.log")
        arms = []
        for side in sides:
            path = side.path
            if side.variant is not None:
                built = prepared.artifacts.get(side.variant)
                if built is None or built.status != "ok":
                    why = built.reason if built else "not built"
                    raise ConfigError(f"{side.label} of {spec.name}: {why}")
                path = built.info["path"]
            worker = WorkerSpec(
                model_ref=spec.ref,
                backend=side.backend,
                device=device,
                artifact_path=str(path),
                inputs_path=prepared.inputs_path,
                parity_path=None,
                task=prepared.task,
                gate={},
                parity_source="",
                warmup=profile.measure.warmup,
                budget_s=0,
                min_sample_ms=profile.measure.min_sample_ms,
                threads=profile.measure.threads,
                calls_per_sample=None,
            )
            arms.append(Arm(worker, requested_slowdown() if side is sides[1] else 0.0))
        on_stage(f"pairing {sides[1].label} with {sides[0].label}")
        comparison = compare_series(
            arms[0],
            {"b": arms[1]},
            sides[0].label,
            pairing_settings(profile, across_variants=not two_builds(sides)),
            logs / "paired.log",
            lambda series: on_stage(f"paired process {series.processes}"),
        )["b"]
    return comparison, [side.label for side in sides]
