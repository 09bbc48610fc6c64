"""Per-model preparation, run in a worker: reference outputs on the parity inputs, then the artifacts.

Everything that calls the user's model (its factory, its forward, the exporters tracing it) happens
here, in a child process, so a model that crashes or hangs fails its own cases and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.isolation import run_isolated
from profiles.schema import Profile

Send = Callable[[dict[str, Any]], None]


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


def prepare_model(
    model_ref: str,
    variants: list[str],
    work_dir: str,
    parity_samples: int,
    calibration_samples: int,
    seed: int,
    with_reference: bool,
    send: Send,
) -> None:
    """Sends `stage` messages as it goes, one `prepared` (with the reference outputs saved, unless
    `with_reference` is false: `bench convert` needs none), then one `artifact` message per variant."""
    from converters.base import ConversionContext, VariantSkipped
    from converters.build import build_artifact
    from converters.cache import ArtifactCache, model_fingerprint
    from profiles.catalog import VARIANTS
    from profiles.errors import ConversionError
    from profiles.paths import file_name
    from profiles.zoo import load_model, resolve_model

    send({"kind": "stage", "stage": "building the model"})
    spec = resolve_model(model_ref)
    loaded = load_model(spec)
    fingerprint = model_fingerprint(loaded, spec.factory)
    out = Path(work_dir) / f"{file_name(spec.name)}-{fingerprint[:12]}"
    out.mkdir(parents=True, exist_ok=True)

    source = ""
    if with_reference:
        send({"kind": "stage", "stage": "computing reference outputs"})
        inputs, labels, source = model_inputs(spec, loaded, parity_samples, "parity", seed)
        references = _reference_outputs(loaded, inputs)
        np.savez(out / "inputs.npz", *(t.numpy() for t in loaded.example_inputs))
        parity = {f"input_{i}": x for i, x in enumerate(inputs)} | {f"ref_{j}": r for j, r in enumerate(references)}
        if labels is not None:
            parity["labels"] = np.asarray(labels)
        np.savez(out / "parity.npz", **parity)
    send(
        {
            "kind": "prepared",
            "fingerprint": fingerprint,
            "inputs_path": str(out / "inputs.npz"),
            "parity_path": str(out / "parity.npz"),
            "parity_source": source,
            "task": spec.task,
        }
    )

    cache = ArtifactCache()
    if any(VARIANTS[name].calibrated for name in variants):
        calibration, _, _ = model_inputs(spec, loaded, calibration_samples, "calibration", seed)
    else:
        calibration = []
    ctx = ConversionContext(calibration=tuple(calibration), seed=seed)
    for name in variants:
        send({"kind": "stage", "stage": f"converting {name}", "variant": name})
        try:
            info = build_artifact(loaded, fingerprint, VARIANTS[name], ctx, cache)
            send({"kind": "artifact", "variant": name, "status": "ok", "info": info})
        except VariantSkipped as exc:
            send({"kind": "artifact", "variant": name, "status": "skipped", "reason": str(exc)})
        except ConversionError as exc:
            send({"kind": "artifact", "variant": name, "status": "failed", "reason": f"conversion failed: {exc}"})


@dataclass
class Prepared:
    """What the parent learns from preparing one model."""

    inputs_path: str = ""
    parity_path: str = ""
    parity_source: str = ""
    task: str = "generic"
    failure: str | None = None  # the model itself failed (factory, reference outputs): all its cases fail
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> `artifact` message


def prepare_isolated(
    model_ref: str,
    variants: list[str],
    work_dir: Path,
    profile: Profile,
    log_path: Path,
    on_stage: Callable[[str], None],
    with_reference: bool = True,
) -> Prepared:
    """Prepare one model in worker processes. A worker dying while converting one variant fails that
    variant, and a new worker carries on with the rest."""
    prepared = Prepared()
    pending = list(variants)
    stage: dict[str, Any] = {}  # the last stage the current worker announced

    def on_message(message: dict[str, Any]) -> None:
        if message["kind"] == "stage":
            stage.clear()
            stage.update(message)
            on_stage(message["stage"])
        elif message["kind"] == "prepared":
            prepared.inputs_path = message["inputs_path"]
            prepared.parity_path = message["parity_path"]
            prepared.parity_source = message["parity_source"]
            prepared.task = message["task"]
        elif message["kind"] == "artifact":
            prepared.artifacts[message["variant"]] = message
            pending.remove(message["variant"])

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
        )
        outcome = run_isolated(prepare_model, arguments, profile.measure.timeout_s, on_message, log_path)
        if outcome.failure is None:
            return prepared
        variant = stage.get("variant")
        if variant is None:
            prepared.failure = f"{outcome.failure} while {stage.get('stage', 'starting')}"
            return prepared
        prepared.artifacts[variant] = {"status": "failed", "reason": f"conversion {outcome.failure}"}
        pending.remove(variant)
        if not pending:
            return prepared
