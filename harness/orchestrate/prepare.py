"""Per-model preparation, run in a worker: reference outputs on the parity inputs, then the artifacts.

Everything that calls the user's model (its factory, its forward, the exporters tracing it) happens
here, in a child process, so a model that crashes or hangs fails its own cases and nothing else.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.process.executor import LOCAL, Executor, Job
from harness.process.messages import ArtifactBuilt, ModelChecked, ModelRejected, PreparedModel, Stage
from harness.results.schema import AdapterRecord, AdapterTaskMetric, ArtifactInfo, ProcessTiming
from profiles.paths import save_torch
from profiles.schema import Profile

Send = Callable[[Any], None]


def model_inputs(spec: Any, loaded: Any, count: int, purpose: str, seed: int) -> tuple[list[np.ndarray], Any, str]:
    """The model's dataset rows for `purpose` ("parity" or "calibration"), else seeded synthetic inputs
    (a different seed per purpose, so calibration never sees the rows parity judges)."""
    if spec.dataset is not None:
        data = spec.dataset(count, purpose)
        return list(data.inputs), data.labels, f"dataset:{spec.name}"
    rng = np.random.default_rng([seed, 0 if purpose == "parity" else 1])
    arrays = []
    for example in loaded.example_inputs:
        sample = example.numpy()
        if np.issubdtype(sample.dtype, np.floating):
            arrays.append(rng.standard_normal((count, *sample.shape[1:])).astype(sample.dtype))
        else:
            arrays.append(np.repeat(sample, count, axis=0))
    return arrays, None, "synthetic"


def _reference_outputs(loaded: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    rows: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for i in range(len(inputs[0])):
            outputs = loaded.module(*(torch.from_numpy(x[i : i + 1]) for x in inputs))
            outputs = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)
            rows.append([o.float().numpy() for o in outputs])
    return [np.concatenate([row[j] for row in rows]) for j in range(len(rows[0]))]


def check_model(ref: str, send: Send) -> None:
    """Import a user model's module and find its factory (worker side of `check_user_models`)."""
    from profiles.errors import ModelError
    from profiles.zoo import import_factory

    try:
        import_factory(ref)
    except ModelError as exc:
        send(ModelRejected(str(exc)))
        return
    send(ModelChecked(ref))


def check_user_models(refs: list[str], timeout_s: float, log_dir: Path, executor: Executor = LOCAL) -> dict[str, str]:
    """Import each user model's module in a worker of its own. A module that raises on import, or has
    no such factory, is a `ModelError` (bad input: exit 2); one that crashes or hangs is returned as a
    failure reason for that model's cases, and the run goes on with the others."""
    from profiles.catalog import ADAPTER_SEPARATOR
    from profiles.errors import ModelError
    from profiles.paths import file_name
    from profiles.zoo import ZOO

    failures = {}
    for ref in refs:
        base = ref.rpartition(ADAPTER_SEPARATOR)[0] if ADAPTER_SEPARATOR in ref else ref  # BASE+ADAPTER
        if base in ZOO:
            continue
        outcome = executor.run(Job(check_model, (base,), timeout_s, log_dir / f"import-{file_name(ref)}.log"))
        rejected = outcome.first(ModelRejected)
        if rejected is not None:
            raise ModelError(rejected.message)
        if outcome.first(ModelChecked) is None:
            failures[ref] = f"{outcome.failure or 'worker sent no result'} while importing the model"
    return failures


def prepare_model(
    model_ref: str,
    variants: list[str],
    work_dir: str,
    parity_samples: int,
    calibration_samples: int,
    seed: int,
    with_reference: bool,
    generation: Any,
    send: Send,
) -> None:
    """Sends `Stage` records as it goes, one `PreparedModel` (with the reference outputs and weights
    saved, unless `with_reference` is false: `bench convert` needs none), then one `ArtifactBuilt` per
    variant. A decoder (the zoo's decoder protocol; `generation` holds `GenerationSettings`) gets token-level
    references instead (`harness.generation.measure.prepare_reference`)."""
    from converters.base import ConversionContext, VariantSkipped
    from converters.build import build_artifact
    from converters.cache import ArtifactCache
    from converters.fingerprint import fingerprint_model
    from profiles.catalog import VARIANTS
    from profiles.errors import ConversionError, ProtocolError
    from profiles.paths import file_name
    from profiles.zoo import decoder_info, decoder_protocol, load_model, resolve_model

    # torch.export (with torchao installed, for ExecuTorch) makes an inductor cache in the temp dir,
    # named after the user and never removed: keep it in this run's work dir instead
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(work_dir) / "torchinductor"))
    send(Stage("building the model"))
    spec = resolve_model(model_ref)
    try:
        loaded = load_model(spec)
        broken = decoder_protocol(loaded) if generation.required else None
        if broken is not None:
            raise ProtocolError(
                f"model '{spec.name}': the profile measures generation ([generation]), but {broken}: "
                "see the decoder protocol in README (Adding a model)"
            )
    except ProtocolError as exc:
        send(ModelRejected(str(exc)))
        return
    fingerprint = fingerprint_model(loaded, spec.name)
    out = Path(work_dir) / f"{file_name(spec.name)}-{fingerprint.digest[:12]}"
    out.mkdir(parents=True, exist_ok=True)

    source = ""
    decoder = decoder_info(loaded)
    task, parity_file = ("generation", "generation.npz") if decoder else (spec.task, "parity.npz")
    if with_reference and decoder is not None:
        from harness.generation.measure import prepare_reference

        send(Stage("computing reference generations"))
        source = prepare_reference(spec, loaded, decoder, generation, parity_samples, seed, out)
        save_torch(loaded.module.state_dict(), out / "weights.pt")
    elif with_reference:
        send(Stage("computing reference outputs"))
        inputs, labels, source = model_inputs(spec, loaded, parity_samples, "parity", seed)
        references = _reference_outputs(loaded, inputs)
        np.savez(out / "inputs.npz", *(t.numpy() for t in loaded.example_inputs))
        parity = {f"input_{i}": x for i, x in enumerate(inputs)} | {f"ref_{j}": r for j, r in enumerate(references)}
        if labels is not None:
            parity["labels"] = np.asarray(labels)
        np.savez(out / "parity.npz", **parity)
        save_torch(loaded.module.state_dict(), out / "weights.pt")
    if with_reference and loaded.peft is not None:
        send(Stage("judging the adapter against its base"))
    send(
        PreparedModel(
            fingerprint=fingerprint.digest,
            inputs_path=str(out / "inputs.npz"),
            parity_path=str(out / parity_file),
            weights_path=str(out / "weights.pt"),
            parity_source=source,
            task=task,
            adapter=adapter_record(spec, loaded, decoder is not None) if with_reference else None,
        )
    )

    cache = ArtifactCache()
    if any(VARIANTS[name].calibrated for name in variants) and decoder is not None:
        from harness.generation.measure import calibration_inputs

        calibration = list(calibration_inputs(spec, loaded, decoder, calibration_samples, seed))
    elif any(VARIANTS[name].calibrated for name in variants):
        calibration, _, _ = model_inputs(spec, loaded, calibration_samples, "calibration", seed)
    else:
        calibration = []
    context = ConversionContext(calibration=tuple(calibration), seed=seed, scratch_root=Path(work_dir))
    with context as ctx:
        for name in variants:
            send(Stage(f"converting {name}", name))
            try:
                info = build_artifact(loaded, fingerprint, VARIANTS[name], ctx, cache)
                send(ArtifactBuilt(name, "ok", info=ArtifactInfo(**info)))
            except VariantSkipped as exc:
                send(ArtifactBuilt(name, "skipped", str(exc)))
            except ConversionError as exc:
                send(ArtifactBuilt(name, "failed", f"conversion failed: {exc}"))


def adapter_record(spec: Any, loaded: Any, decoder: bool) -> AdapterRecord | None:
    """What a `BASE+ADAPTER` model's adapter adds (rank, adapted modules, its factors' bytes) and its task
    metric on held-out rows against the base's (`profiles.zoo.adapters.task_metric`); None for a model
    without an adapter."""
    from profiles.zoo.adapters import lora_layout, task_metric

    if spec.adapter is None or loaded.peft is None:
        return None
    layout = lora_layout(loaded.peft)
    task = task_metric(spec, loaded, decoder)
    return AdapterRecord(
        model=spec.name,
        base=spec.adapter.base,
        adapter=spec.adapter.adapter,
        ranks=list(layout.ranks),
        targets=list(layout.targets),
        parameters=layout.parameters,
        weight_bytes=layout.bytes_fp32,
        task=None if task is None else AdapterTaskMetric(task.metric, task.adapter, task.base, task.rows, task.data),
    )


def generation_settings(profile: Profile) -> Any:
    from harness.generation.measure import GenerationSettings

    table = profile.generation
    return GenerationSettings(
        tuple(table.prompt_lengths),
        table.new_tokens,
        table.parity_prompt_tokens,
        table.parity_text_tokens,
        required="generation" in profile.model_fields_set,
    )


@dataclass
class Prepared:
    """What the parent learns from preparing one model."""

    inputs_path: str = ""
    parity_path: str = ""
    weights_path: str = ""
    parity_source: str = ""
    task: str = "generic"
    adapter: AdapterRecord | None = None  # a `BASE+ADAPTER` model's adapter
    failure: str | None = None  # the model itself failed (factory, reference outputs): all its cases fail
    rejected: str | None = None  # the model breaks the protocol (bad input): the command stops, exit 2
    artifacts: dict[str, ArtifactBuilt] = field(default_factory=dict)
    timings: list[ProcessTiming] = field(default_factory=list)  # its worker processes


def prepare_isolated(
    model_ref: str,
    variants: list[str],
    work_dir: Path,
    profile: Profile,
    log_path: Path,
    on_stage: Callable[[str], None],
    with_reference: bool = True,
    cancel: threading.Event | None = None,
    executor: Executor = LOCAL,
) -> Prepared:
    """Prepare one model in worker processes. A worker dying while converting one variant fails that
    variant, and a new worker carries on with the rest. The timeout is per stage (building the model,
    its references, each conversion), not for the whole model."""
    prepared = Prepared()
    pending = list(variants)
    stage: list[Stage] = []  # the last stage the current worker announced and has not finished

    def on_message(message: Any) -> None:
        if isinstance(message, Stage):
            stage[:] = [message]
            on_stage(message.stage)
        elif isinstance(message, PreparedModel):
            prepared.inputs_path = message.inputs_path
            prepared.parity_path = message.parity_path
            prepared.weights_path = message.weights_path
            prepared.parity_source = message.parity_source
            prepared.task = message.task
            prepared.adapter = message.adapter
        elif isinstance(message, ModelRejected):
            prepared.rejected = message.message
        elif isinstance(message, ArtifactBuilt):
            prepared.artifacts[message.variant] = message
            if message.variant in pending:
                pending.remove(message.variant)
            stage.clear()  # finished: a worker dying after this is not this variant's fault

    while True:
        stage.clear()
        arguments = (
            model_ref,
            list(pending),
            str(work_dir),
            profile.parity.samples,
            profile.convert.calibration_samples,
            profile.measure.seed,
            with_reference,
            generation_settings(profile),
        )
        job = Job(prepare_model, arguments, profile.measure.timeout_s, log_path, per_message=True)
        outcome = executor.run(job, on_message, cancel)
        startup = outcome.ready_at - outcome.spawned_at if outcome.ready_at else None
        prepared.timings.append(ProcessTiming("prepare", model_ref, outcome.wall_s, startup))
        if outcome.failure is None or (cancel is not None and cancel.is_set()):
            return prepared
        current = stage[0] if stage else None
        if current is None or current.variant is None:  # not while converting: the model itself failed
            if pending:  # (a worker dying after its last artifact has lost nothing)
                prepared.failure = f"{outcome.failure} while {current.stage if current else 'starting'}"
            return prepared
        prepared.artifacts[current.variant] = ArtifactBuilt(current.variant, "failed", f"conversion {outcome.failure}")
        pending.remove(current.variant)
        if not pending:
            return prepared


@dataclass(frozen=True)
class PrepareRequest:
    model_ref: str
    variants: list[str]
    log_path: Path
    on_stage: Callable[[str], None]


def prepare_many(
    requests: list[PrepareRequest],
    work_dir: Path,
    profile: Profile,
    with_reference: bool = True,
    executor: Executor = LOCAL,
) -> Iterator[tuple[PrepareRequest, Prepared]]:
    """Prepare several models, `profile.convert.jobs` at once (each in its own worker processes), and yield
    them in the order asked as each is ready. Much of a conversion is single-threaded Python, so two at a
    time shorten a profile's conversions even on two cores (`docs/performance.md`). Nothing is measured
    meanwhile. Leaving early (Ctrl-C, an error) kills every worker still converting."""
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=profile.convert.jobs, thread_name_prefix="prepare")
    try:
        futures = [
            pool.submit(
                prepare_isolated,
                request.model_ref,
                request.variants,
                work_dir,
                profile,
                request.log_path,
                request.on_stage,
                with_reference,
                cancel,
                executor,
            )
            for request in requests
        ]
        for request, future in zip(requests, futures, strict=True):
            yield request, future.result()
    finally:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
