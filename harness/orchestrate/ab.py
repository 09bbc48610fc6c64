"""`bench ab A B`: two variants of one model, or two artifact files, paired in the same processes.

An artifact file's suffix names its runtime (`Backend.suffixes`). One its backend stages (`Backend.staging`:
a `.pte` without the converter's `delegation.json` beside it, and on macOS a Core ML `.pte`) is staged
once, in a temporary directory, with notes read from the program and the Core ML compute units set for
the device (`stage_programs`), so that no measuring process pays for reading or rewriting it.

Two artifact files for one runtime are taken for two builds of one variant (an export before and after
a change) and paired as the `--baseline` gate pairs them: no lead-in, the median of per-round ratios,
the statistic the validation study checked. Anything else (two catalog variants, a file against a
variant, two runtimes) is paired as different variants: with a lead-in and the fastest-third statistic
(`harness.pairing.series.pairing_settings`)."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from converters.executorch import DELEGATION_FILE
from harness.backends.registry import backends, format_backend, suffix_backends
from harness.orchestrate.prepare import check_user_models, prepare_isolated
from harness.orchestrate.staging import StageJob, stage_isolated
from harness.pairing.series import compare_series, pairing_settings
from harness.pairing.worker import Arm
from harness.process.executor import LOCAL, Executor, Job
from harness.process.scratch import run_environment
from harness.process.specs import WorkerSpec
from harness.results.schema import PairedComparison
from profiles.catalog import VARIANTS
from profiles.errors import ConfigError, ModelError, ProtocolError, first_line
from profiles.paths import cache_root, file_name
from profiles.schema import ResolvedProfile
from profiles.zoo import resolve_model


@dataclass(frozen=True)
class Side:
    label: str
    variant: str | None  # a catalog variant to build, or None for an artifact file
    path: str | None
    backend: str


def side_of(text: str) -> Side:
    """A catalog variant name, or the path of an artifact file whose suffix names its runtime; a path
    that cannot hold an artifact (a directory where a file belongs, an empty or unreadable file) is a
    `ConfigError` here, before anything is built or measured."""
    if text in VARIANTS:
        return Side(text, text, None, format_backend(VARIANTS[text].format))
    path = Path(text)
    if not path.exists():
        raise ConfigError(f"'{text}': neither a variant ({', '.join(VARIANTS)}) nor an artifact file that exists")
    suffixes = suffix_backends()
    backend = suffixes.get(path.suffix)
    if backend is None:
        raise ConfigError(f"{text}: cannot tell its runtime; expected one of {', '.join(suffixes)}")
    if path.suffix not in backends()[backend].directory_suffixes:
        if path.is_dir():
            raise ConfigError(f"{text}: is a directory; a {path.suffix} artifact is a file")
        try:
            with open(path, "rb") as handle:
                empty = not handle.read(1)
        except OSError as exc:
            raise ConfigError(f"{text}: cannot read it: {exc.strerror or exc}") from exc
        if empty:
            raise ConfigError(f"{text}: is empty, not a {path.suffix} artifact")
    return Side(text, None, str(path.resolve()), backend)


@dataclass(frozen=True)
class ArmChecked:
    """One arm of `try_arms`: loaded and called once on the model's inputs, or the first line of why not."""

    index: int
    error: str | None


def try_arms(specs: list[WorkerSpec], send: Callable[[Any], None]) -> None:
    """Worker: load each artifact and call it once on the model's inputs, one `ArmChecked` per arm, so an
    artifact that is not a model, or not one of these inputs, is refused before measuring. Any exception
    of a runtime is that arm's answer: the parent turns it into one line."""
    from harness.backends.base import LoadRequest
    from harness.process.specs import npz_arrays

    for index, spec in enumerate(specs):
        backend = backends()[spec.backend]()
        try:
            request = LoadRequest(spec.artifact_path, spec.device, spec.threads, spec.model_ref)
            backend.prepare(request)
            session = backend.load(request)
            session.runner(npz_arrays(spec.inputs_path, "arr_"))()
            session.sync()
            send(ArmChecked(index, None))
        except Exception as exc:  # any runtime's refusal is this arm's answer, logged in the worker's log
            logging.getLogger(__name__).info("arm %d (%s) refused: %s", index, spec.artifact_path, exc)
            send(ArmChecked(index, first_line(exc)))
        finally:
            backend.close()


def check_arms(
    sides: list[Side], specs: list[WorkerSpec], model: str, timeout_s: float, log: Path, executor: Executor = LOCAL
) -> None:
    """`ConfigError` naming the first side whose artifact does not load or run on `model`'s inputs, with
    the runtime's first line (one isolated worker for all: a crash there names the side it was on)."""
    outcome = executor.run(Job(try_arms, (specs,), timeout_s, log))
    answers = {m.index: m.error for m in outcome.messages if isinstance(m, ArmChecked)}
    for index, side in enumerate(sides):
        if index not in answers:
            why = outcome.failure or "the worker sent no answer"
            raise ConfigError(f"{side.label}: cannot load it on {side.backend}: {why} (log: {log})")
        if answers[index] is not None:
            raise ConfigError(f"{side.label}: does not load or run on {model}'s inputs: {answers[index]}")


def two_builds(sides: list[Side]) -> bool:
    """Whether A and B are two builds of one variant: two artifact files for the same runtime."""
    return all(side.variant is None for side in sides) and sides[0].backend == sides[1].backend


def staging(side: Side) -> bool | None:
    """What the side's backend says of staging its artifact (`Backend.staging`), from the converter's notes
    beside it (None where there are none: a build from elsewhere); None for a catalog variant."""
    if not side.path:
        return None
    notes = Path(side.path).parent / DELEGATION_FILE
    return backends()[side.backend].staging(json.loads(notes.read_text()) if notes.exists() else None)


def stage_programs(
    sides: list[Side], device: str, work: Path, timeout_s: float, log: Path, executor: Executor = LOCAL
) -> list[Side]:
    """The sides, each artifact its backend stages (an ExecuTorch program built elsewhere, with notes read
    from it; where this host can run the Core ML delegate, a Core ML program rewritten for the device's
    compute units) staged for `device` into its own directory under `work` (`harness.orchestrate.staging`,
    one isolated worker for all)."""
    chosen = {i: rewrite for i, side in enumerate(sides) if (rewrite := staging(side)) is not None}
    jobs = [
        StageJob(sides[i].backend, str(sides[i].path), device, str(work / f"program-{i}"), rewrite)
        for i, rewrite in chosen.items()
    ]
    staged = list(sides)
    for i, outcome in zip(chosen, stage_isolated(jobs, timeout_s, log, executor), strict=True):
        if outcome.path is None:
            raise ConfigError(f"{sides[i].label}: cannot read the program: {outcome.error} (log: {log})")
        staged[i] = replace(sides[i], path=outcome.path)
    return staged


def run_ab(
    resolved: ResolvedProfile,
    a_text: str,
    b_text: str,
    device: str,
    on_stage: Callable[[str], None],
    executor: Executor = LOCAL,
) -> tuple[PairedComparison, list[str]]:
    """B against A on `device`, for the profile's one model; and the labels of A and B. Every worker is a
    `Job` handed to `executor`."""
    profile = resolved.profile
    if len(profile.models) != 1:
        raise ConfigError(f"bench ab pairs artifacts of one model; got {len(profile.models)}: pass one -m MODEL")
    sides = [side_of(a_text), side_of(b_text)]
    for side in sides:
        reason = backends()[side.backend]().available(device)
        if reason:
            raise ConfigError(f"{side.label} on {device}: {reason}")
    spec = resolve_model(profile.models[0])
    logs = cache_root() / "logs" / f"ab-{int(time.time())}"
    logs.mkdir(parents=True, exist_ok=True)
    failures = check_user_models([spec.ref], profile.measure.timeout_s, logs, executor)
    if spec.ref in failures:
        raise ModelError(f"{spec.ref}: {failures[spec.ref]}")
    variants = [side.variant for side in sides if side.variant is not None]
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as work, run_environment(Path(work)):
        log = logs / f"{file_name(spec.name)}.log"
        prepared = prepare_isolated(spec.ref, variants, Path(work), profile, log, on_stage, executor=executor)
        if prepared.rejected:
            raise ProtocolError(prepared.rejected)
        if prepared.failure:
            raise ModelError(f"{spec.ref}: {prepared.failure}")
        built_sides = []
        for side in sides:
            if side.variant is not None:
                built = prepared.artifacts.get(side.variant)
                if built is None or built.status != "ok":
                    why = built.reason if built else "not built"
                    raise ConfigError(f"{side.label} of {spec.name}: {why}")
                side = replace(side, path=built.info.path if built.info else None)
            built_sides.append(side)
        staged = stage_programs(
            built_sides, device, Path(work), profile.measure.timeout_s, logs / "staging.log", executor
        )
        arms = []
        for side in staged:
            worker = WorkerSpec(
                model_ref=spec.ref,
                backend=side.backend,
                device=device,
                artifact_path=str(side.path),
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
            arms.append(Arm(worker))
        on_stage(f"loading {sides[0].label} and {sides[1].label}")
        specs = [arm.spec for arm in arms]
        check_arms(staged, specs, spec.name, profile.measure.timeout_s, logs / "check.log", executor)
        on_stage(f"pairing {sides[1].label} with {sides[0].label}")
        comparison = compare_series(
            arms[0],
            {"b": arms[1]},
            sides[0].label,
            pairing_settings(profile, across_variants=not two_builds(sides)),
            logs / "paired.log",
            lambda series: on_stage(f"paired process {series.processes}"),
            executor,
        )["b"]
    return comparison, [side.label for side in sides]
