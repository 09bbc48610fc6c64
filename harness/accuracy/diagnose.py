"""Where a failing ONNX variant leaves the reference: layer by layer on its worst samples.

Runs in a worker (it calls the user's model). The torch reference is hooked on every named module; the
variant's graph gets each module's output tensor as an extra graph output, found through the scope
metadata the torch.export-based exporter writes on every node (`pkg.torch.onnx.name_scopes`). Layers
are compared in the order torch ran them.
"""

from __future__ import annotations

import ast
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.results.schema import DiagnosisReport, JsonValue, LayerComparison, SnrDrop, WorstSample

WORST_SAMPLES = 4
TOP_DROPS = 5
DEFAULT_TOLERANCE_DB = 30.0
SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def module_outputs(model: Any) -> dict[str, str]:
    """torch module name -> the ONNX tensor holding its output: the last node inside its scope."""
    found: dict[str, str] = {}
    for node in model.graph.node:
        scopes = next((ast.literal_eval(p.value) for p in node.metadata_props if p.key == SCOPES_KEY), None)
        if not scopes or not node.output:
            continue
        for scope in scopes[1:-1]:  # the root '' first, the op's own name last
            found[scope] = node.output[0]
    return found


def snr_db(reference: np.ndarray, actual: np.ndarray) -> float | None:
    """Signal-to-noise ratio in dB; None where the two are identical (infinite)."""
    noise = float(np.sum((actual.astype(np.float64) - reference.astype(np.float64)) ** 2))
    if noise == 0:
        return None
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return 10 * np.log10(signal / noise) if signal > 0 else float("-inf")


def _with_outputs(path: str, names: list[str], directory: Path) -> str:
    """A copy of the graph with `names` added as outputs (typed through shape inference)."""
    import onnx

    model = onnx.load(path)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing and name in types:
            model.graph.output.append(types[name])
    target = directory / "diagnose.onnx"
    onnx.save(model, str(target))
    return str(target)


def _torch_layers(module: Any, inputs: list[np.ndarray]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Each named module's output on the samples (batch 1 each, stacked), in the order they ran."""
    import torch

    order: list[str] = []
    captured: dict[str, list[np.ndarray]] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(_module: Any, _args: Any, output: Any) -> None:
            tensor = output[0] if isinstance(output, tuple | list) else output
            if isinstance(tensor, torch.Tensor):
                if name not in captured:
                    order.append(name)
                captured.setdefault(name, []).append(tensor.detach().float().numpy())

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules() if n]
    try:
        with torch.inference_mode():
            for i in range(len(inputs[0])):
                module(*(torch.from_numpy(x[i : i + 1]) for x in inputs))
    finally:
        for handle in handles:
            handle.remove()
    return order, {name: np.concatenate(values) for name, values in captured.items()}


def _run_rows(session: Any, outputs: list[str] | None, inputs: list[np.ndarray]) -> list[list[np.ndarray]]:
    """One batch-1 run per sample row."""
    names = [i.name for i in session.get_inputs()]
    return [
        session.run(outputs, dict(zip(names, [x[i : i + 1] for x in inputs], strict=True)))
        for i in range(len(inputs[0]))
    ]


def prepared_module(model_ref: str, weights_path: str) -> Any:
    """The model as it was prepared: built by its factory, then given the weights the reference outputs
    and the artifacts came from (a factory without a seed builds other weights each time)."""
    import torch

    from profiles.zoo import load_model, resolve_model

    module = load_model(resolve_model(model_ref)).module
    module.load_state_dict(torch.load(weights_path, weights_only=True, map_location="cpu"))
    return module.eval()


def diagnose(
    model_ref: str,
    weights_path: str,
    artifact_path: str,
    parity_path: str,
    tolerance_db: float,
    send: Callable[[Any], None],
) -> None:
    import onnx
    import onnxruntime as ort

    from harness.process.messages import Diagnosis
    from harness.process.specs import npz_arrays

    inputs = npz_arrays(parity_path, "input_")
    reference = npz_arrays(parity_path, "ref_")[0]
    session = ort.InferenceSession(artifact_path, providers=["CPUExecutionProvider"])
    outputs = np.concatenate([row[0] for row in _run_rows(session, None, inputs)])
    flat_ref = reference.reshape(len(reference), -1).astype(np.float64)
    flat_out = np.nan_to_num(outputs.reshape(len(outputs), -1).astype(np.float64), nan=0.0, posinf=1e30, neginf=-1e30)
    norms = np.linalg.norm(flat_ref, axis=1) * np.linalg.norm(flat_out, axis=1)
    cosines = np.where(norms > 0, np.sum(flat_ref * flat_out, axis=1) / np.where(norms > 0, norms, 1), 0.0)
    cosines = np.where(np.isfinite(outputs.reshape(len(outputs), -1)).all(axis=1), cosines, -1.0)
    worst = [int(i) for i in np.argsort(cosines)[:WORST_SAMPLES]]
    chosen = [x[worst] for x in inputs]

    order, torch_values = _torch_layers(prepared_module(model_ref, weights_path), chosen)
    mapping = module_outputs(onnx.load(artifact_path, load_external_data=False))
    layers = [name for name in order if name in mapping]
    with tempfile.TemporaryDirectory(prefix="bench-diagnose-") as directory:
        extended = _with_outputs(artifact_path, [mapping[n] for n in layers], Path(directory))
        probe = ort.InferenceSession(extended, providers=["CPUExecutionProvider"])
        wanted = [o.name for o in probe.get_outputs()]
        rows = _run_rows(probe, wanted, chosen)
    onnx_values = {name: np.concatenate([row[j] for row in rows]) for j, name in enumerate(wanted)}

    report = []
    for name in layers:
        tensor = mapping[name]
        if tensor not in onnx_values or onnx_values[tensor].size != torch_values[name].size:
            continue
        actual = onnx_values[tensor].reshape(torch_values[name].shape)
        nonfinite = int(actual.size - np.isfinite(actual).sum())
        finite = np.nan_to_num(actual.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        report.append(LayerComparison(
            layer=name,
            tensor=tensor,
            snr_db=None if nonfinite else snr_db(torch_values[name], finite),
            max_abs_err=float(np.max(np.abs(finite - torch_values[name]))) if actual.size else 0.0,
            nonfinite=nonfinite,
        ))  # fmt: skip
    send(Diagnosis(summarise(report, worst, cosines, tolerance_db)))


def summarise(
    layers: list[LayerComparison], worst: list[int], cosines: np.ndarray, tolerance_db: float
) -> DiagnosisReport:
    def bad(row: LayerComparison) -> bool:
        return row.nonfinite > 0 or (row.snr_db is not None and row.snr_db < tolerance_db)

    first = next((row for row in layers if bad(row)), None)
    drops = []
    previous: float | None = None
    for row in layers:
        current = row.snr_db
        if current is not None and previous is not None:
            drops.append(SnrDrop(row.layer, previous - current, current))
        if current is not None:
            previous = current
    drops.sort(key=lambda d: d.drop_db, reverse=True)
    samples = [WorstSample(i, float(cosines[i])) for i in worst]
    if first is None:
        summary = (
            f"every compared layer is within the {tolerance_db:g} dB tolerance on the {len(worst)} worst samples, "
            "yet the outputs diverge: the graph's structure differs from the model's (a branch or value frozen "
            "at export), or the difference lies in operations between the compared layers"
        )
    elif first.nonfinite:
        summary = f"first NaN/Inf at layer '{first.layer}' ({first.nonfinite} values)"
    else:
        summary = f"first layer below {tolerance_db:g} dB: '{first.layer}' at {first.snr_db:.1f} dB"
    if drops[:TOP_DROPS]:
        summary += "; largest SNR drops: " + ", ".join(f"{d.layer} -{d.drop_db:.1f} dB" for d in drops[:TOP_DROPS])
    summary += "; worst samples: " + ", ".join(f"#{s.index} (cosine {s.cosine:.4f})" for s in samples)
    return DiagnosisReport(
        first_divergent_layer=first.layer if first else None,
        tolerance_db=tolerance_db,
        largest_drops=drops[:TOP_DROPS],
        worst_samples=samples,
        layers=layers,
        summary=summary,
    )


def with_trace_notes(diagnosis: DiagnosisReport, notes: dict[str, JsonValue]) -> DiagnosisReport:
    """A diagnosis that found no divergent layer, told what the artifact's trace froze where it froze
    something (`converters.tracing`): the layers match because the graph computes the branch the example
    took, and no layer comparison can show a branch that is not in the graph."""
    from converters.tracing import NOTE_KEY

    frozen = notes.get(NOTE_KEY, [])
    if not isinstance(frozen, list) or not frozen or diagnosis.first_divergent_layer is not None:
        return diagnosis
    if diagnosis.layers is None:
        return diagnosis
    cut = diagnosis.summary.find("; worst samples: ")
    tail = diagnosis.summary[cut:] if cut >= 0 else ""
    tolerance = DEFAULT_TOLERANCE_DB if diagnosis.tolerance_db is None else diagnosis.tolerance_db
    diagnosis.summary = (
        f"the graph's structure differs from the model's: {'; '.join(map(str, frozen))} (every compared layer "
        f"is within the {tolerance:g} dB tolerance){tail}"
    )
    return diagnosis


def executorch_not_diagnosed(notes: dict[str, JsonValue]) -> DiagnosisReport:
    """Why a failing ExecuTorch variant is not diagnosed layer by layer. Checked with executorch 1.5.1: with
    an ETRecord and an ETDump debug buffer, the Inspector gets one output per delegate call and only timing
    for the ops inside it, so no layer between the input and the delegate's output can be compared."""
    split = notes.get("delegation")
    split = split if isinstance(split, dict) else {}
    inside = split.get("delegated_nodes", "?")
    outside = split.get("non_delegated_nodes", 0)
    total = inside + outside if isinstance(inside, int) and isinstance(outside, int) else "?"
    delegate = notes.get("delegate", "the delegate")
    return DiagnosisReport(
        summary=(
            f"no layer-by-layer diagnosis: {inside} of {total} nodes run inside {delegate}, and ETDump records "
            "only each delegate call's output (per-op timing, no intermediate outputs); the same model's onnx "
            "variants are diagnosed layer by layer"
        )
    )
