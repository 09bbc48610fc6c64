"""ExecuTorch: the converter's real `.pte` files on the real runtime, the device-truth refusals, and a model
that `torch.export` cannot take failing only its ExecuTorch cases."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from converters.base import ConversionContext, VariantSkipped
from converters.build import build_artifact
from converters.cache import ArtifactCache, key_inputs
from converters.executorch import ET_MISSING, first_line
from converters.fingerprint import Fingerprint, fingerprint_model
from harness.ab import Side, stage_programs
from harness.backends.base import DeviceUnavailable, LoadRequest
from harness.backends.executorch import (
    COMPUTE_UNITS,
    PORTABLE,
    ExecuTorchBackend,
    delegate_refusal,
    delegation_placement,
    program_notes,
    unavailable_reason,
)
from harness.diagnose import executorch_not_diagnosed
from harness.prepare import model_inputs
from harness.sequential import ROUNDS_STATISTIC
from profiles.catalog import FORMAT_BACKEND, VARIANTS
from profiles.errors import ConfigError
from profiles.zoo import load_model, resolve_model
from tests.conftest import bench

ET_VARIANTS = ("et-xnnpack-fp32", "et-xnnpack-int8", "et-coreml-fp16", "et-mps")
requires_executorch = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None, reason=ET_MISSING
)  # fmt: skip
requires_macos = pytest.mark.skipif(sys.platform != "darwin", reason="requires macOS (ExecuTorch's Core ML delegate)")


def test_the_variants_are_in_the_catalog_and_reach_the_backend() -> None:
    assert all(VARIANTS[name].format == "executorch" for name in ET_VARIANTS)
    assert FORMAT_BACKEND["executorch"] == "executorch"
    assert VARIANTS["et-xnnpack-int8"].calibrated and not VARIANTS["et-xnnpack-fp32"].calibrated
    assert [VARIANTS[name].family for name in ET_VARIANTS] == ["fp32", "int8", "fp16", "fp16"]


def test_executorch_versions_key_only_its_own_artifacts() -> None:
    et = key_inputs(Fingerprint("m"), VARIANTS["et-xnnpack-fp32"], {})["versions"]
    onnx = key_inputs(Fingerprint("m"), VARIANTS["onnx-fp32"], {})["versions"]
    assert "executorch" in et and "torchao" in et
    assert "executorch" not in onnx  # installing the extra does not invalidate every other artifact


@pytest.mark.parametrize(
    ("device", "system", "machine", "installed", "reason"),
    [
        ("cpu", "Linux", "x86_64", True, None),
        ("cpu", "Linux", "x86_64", False, ET_MISSING),
        ("gpu", "Linux", "x86_64", True, "gpu runs through ExecuTorch's Core ML delegate, which requires macOS"),
        ("all", "Linux", "x86_64", True, "all runs through ExecuTorch's Core ML delegate, which requires macOS"),
        (
            "ane",
            "Darwin",
            "x86_64",
            True,
            "ane runs through ExecuTorch's Core ML delegate, which requires macOS on Apple silicon",
        ),
        ("ane", "Darwin", "arm64", True, None),
        ("npu", "Linux", "x86_64", True, "executorch has no 'npu' device (cpu, gpu, ane, all)"),
    ],
)
def test_device_refusals(device: str, system: str, machine: str, installed: bool, reason: str | None) -> None:
    assert unavailable_reason(device, system, machine, installed) == reason


def test_compute_units_are_spelled_as_the_delegate_writes_them() -> None:
    """The `compute_units` compile spec is `ct.ComputeUnit.<name>.lower()` (CoreMLBackend.generate_compile_specs)."""
    import coremltools as ct

    from harness.backends.coreml import COMPUTE_UNITS as CT_UNITS

    assert {d: getattr(ct.ComputeUnit, CT_UNITS[d]).name.lower() for d in CT_UNITS} == COMPUTE_UNITS


def test_the_missing_extra_is_named_with_its_install_command() -> None:
    assert "pip install 'ondevice-bench[executorch]'" in ET_MISSING


def test_a_delegate_the_runtime_lacks_or_a_cpu_delegate_off_the_cpu_is_refused() -> None:
    linux = ["XnnpackBackend"]
    assert delegate_refusal("XnnpackBackend", "cpu", linux) is None
    assert delegate_refusal("CoreMLBackend", "cpu", linux).startswith("Core ML delegate requires macOS: ")
    assert "runs on the CPU only" in delegate_refusal("XnnpackBackend", "ane", [*linux, "CoreMLBackend"])
    assert delegate_refusal("CoreMLBackend", "ane", [*linux, "CoreMLBackend"]) is None
    assert delegate_refusal(PORTABLE, "cpu", []) is None
    assert delegate_refusal(PORTABLE, "gpu", linux) == "a program without a delegate runs on the CPU only, not gpu"


def test_placement_counts_portable_kernels_on_the_cpu_and_labels_an_unchecked_core_ml_request() -> None:
    notes = {
        "delegate": "CoreMLBackend",
        "delegation": {
            "delegated_nodes": 9,
            "non_delegated_nodes": 3,
            "by_operator": {"getitem": {"delegated": 0, "non_delegated": 1}},
        },
    }
    unchecked = delegation_placement(notes, None, "ane")
    assert unchecked["by_device"] == {"coreml (requested ane)": 9, "cpu": 2}  # getitem only unpacks outputs
    planned = delegation_placement(notes, {"by_device": {"ane": 7, "cpu": 1}}, "ane")
    assert planned["by_device"] == {"ane": 7, "cpu": 3}
    assert planned["by_delegate"] == {"CoreMLBackend": 9, "portable kernels": 2}


def test_a_failing_executorch_variant_says_why_it_is_not_diagnosed_by_layer() -> None:
    notes = {"delegate": "XnnpackBackend", "delegation": {"delegated_nodes": 27, "non_delegated_nodes": 1}}
    summary = executorch_not_diagnosed(notes)["summary"]
    assert summary.startswith("no layer-by-layer diagnosis: 27 of 28 nodes run inside XnnpackBackend")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("executorch", reason=ET_MISSING)
    spec = resolve_model("digits_cnn")
    model = load_model(spec)
    calibration, _, _ = model_inputs(spec, model, 32, "calibration", 0)
    parity, labels, _ = model_inputs(spec, model, 256, "parity", 0)
    ctx = ConversionContext(calibration=tuple(calibration))
    cache = ArtifactCache(tmp_path_factory.mktemp("artifacts"))
    built = {
        name: build_artifact(model, fingerprint_model(model), VARIANTS[name], ctx, cache)
        for name in ("et-xnnpack-fp32", "et-xnnpack-int8")
    }
    ctx.close()
    return model, parity[0], labels, built


def _outputs(path: str, inputs: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, dict, dict]:
    backend = ExecuTorchBackend()
    request = LoadRequest(path, device, 1, "digits_cnn")
    backend.prepare(request)
    try:
        session = backend.load(request)
        outputs = np.concatenate([session.run([inputs[i : i + 1]])[0] for i in range(len(inputs))])
        return outputs, session.placement(), session.describe()
    finally:
        backend.close()


@requires_executorch
def test_xnnpack_fp32_matches_torch_and_records_its_delegation(digits) -> None:
    model, inputs, _, built = digits
    info = built["et-xnnpack-fp32"]
    assert info["path"].endswith("model.pte") and sorted(info["files"]) == ["delegation.json", "model.pte"]
    assert info["converter_path"] == "torch.export + to_edge_transform_and_lower(XnnpackPartitioner)"
    split = info["notes"]["delegation"]
    assert split["delegated_nodes"] > 0 and split["by_operator"]["aten_convolution_default"]["delegated"] == 2
    assert info["notes"]["versions"]["executorch"]
    assert info["weight_bytes_by_dtype"] == {"float32": sum(p.numel() * 4 for p in model.module.parameters())}
    outputs, placement, described = _outputs(info["path"], inputs)
    with torch.inference_mode():
        reference = model.module(torch.from_numpy(inputs)).numpy()
    assert np.abs(outputs - reference).max() < 1e-4
    assert placement["by_device"] == {"cpu": split["delegated_nodes"]}  # nothing left on portable kernels
    assert described["threads"] == 1 and described["delegate"] == "XnnpackBackend"


@requires_executorch
def test_xnnpack_int8_keeps_digits_accuracy(digits) -> None:
    """Acceptance: task accuracy of the int8 program >= 99% of the fp32 model's, on parity rows kept apart
    from the calibration rows."""
    model, inputs, labels, built = digits
    info = built["et-xnnpack-int8"]
    assert "pt2e int8" in info["converter_path"]
    assert max(info["weight_bytes_by_dtype"], key=info["weight_bytes_by_dtype"].get) == "int8"
    assert info["size_bytes"] < 0.5 * built["et-xnnpack-fp32"]["size_bytes"]
    outputs, _, _ = _outputs(info["path"], inputs)
    with torch.inference_mode():
        reference = model.module(torch.from_numpy(inputs)).numpy()
    fp32_accuracy = float(np.mean(reference.argmax(1) == labels))
    int8_accuracy = float(np.mean(outputs.argmax(1) == labels))
    assert int8_accuracy >= 0.99 * fp32_accuracy, (int8_accuracy, fp32_accuracy)


@requires_executorch
def test_an_xnnpack_program_is_never_run_under_another_device(digits) -> None:
    backend = ExecuTorchBackend()
    request = LoadRequest(digits[3]["et-xnnpack-fp32"]["path"], "gpu", 1, "digits_cnn")
    backend.prepare(request)
    with pytest.raises(DeviceUnavailable, match="XnnpackBackend runs on the CPU only"):
        backend.load(request)


def _bare_copy(built: dict, directory: Path) -> Path:
    """The program alone, as a build from elsewhere arrives: no delegation.json beside it."""
    directory.mkdir()
    copy = directory / "model.pte"
    copy.write_bytes(Path(built["path"]).read_bytes())
    return copy


@requires_executorch
def test_a_program_built_elsewhere_is_staged_with_notes_read_from_the_program(digits, tmp_path: Path) -> None:
    _, inputs, _, built = digits
    bare = _bare_copy(built["et-xnnpack-fp32"], tmp_path / "elsewhere")
    assert program_notes(bare) == {"delegate": "XnnpackBackend", "delegation": None}
    work, log = tmp_path / "work", tmp_path / "notes.log"
    work.mkdir()
    sides = [
        Side("built.pte", None, built["et-xnnpack-fp32"]["path"], "executorch"),
        Side("x", None, str(bare), "executorch"),
    ]
    kept, staged = stage_programs(sides, work, 120, log)
    assert kept == sides[0]  # the converter's notes lie beside it: used in place
    assert Path(staged.path).parent.parent == work and Path(staged.path).resolve() == bare.resolve()
    outputs, placement, described = _outputs(staged.path, inputs[:8])
    expected, _, _ = _outputs(built["et-xnnpack-fp32"]["path"], inputs[:8])
    assert np.array_equal(outputs, expected) and described["delegate"] == "XnnpackBackend"
    assert placement == {
        "source": "the program's delegate (delegation.json absent: node counts unknown)",
        "by_delegate": {"XnnpackBackend": None},
    }
    backend = ExecuTorchBackend()
    request = LoadRequest(staged.path, "gpu", 1, "digits_cnn")
    backend.prepare(request)
    with pytest.raises(DeviceUnavailable, match="XnnpackBackend runs on the CPU only"):
        backend.load(request)
    garbage = tmp_path / "garbage.pte"
    garbage.write_bytes(b"not a program")
    with pytest.raises(ConfigError, match=r"^garbage.pte: cannot read the program: "):
        stage_programs([Side("garbage.pte", None, str(garbage), "executorch")], work, 120, log)


@requires_executorch
def test_bench_ab_pairs_two_pte_builds_as_two_builds_of_one_variant(digits, tmp_path: Path) -> None:
    old = _bare_copy(digits[3]["et-xnnpack-fp32"], tmp_path / "old")
    new = _bare_copy(digits[3]["et-xnnpack-fp32"], tmp_path / "new")
    out = tmp_path / "ab.json"
    proc = bench("ab", str(old), str(new), "-m", "digits_cnn", "--pair-budget", "8", "--json", str(out))
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # the verdict of one program against itself
    assert proc.stdout.startswith(f"{new} vs {old} on cpu: ")
    assert (
        f"paired as two builds of one variant, as --baseline, no lead-in; per process: {ROUNDS_STATISTIC}"
        in proc.stdout
    )
    comparison = json.loads(out.read_text())
    assert comparison["statistic"] == ROUNDS_STATISTIC and comparison["processes"]
    assert all(p["lead_in"] == [0, 0] for p in comparison["processes"])  # as the --baseline gate pairs
    assert 0.8 < comparison["ratio"] < 1.25


@requires_executorch
def test_core_ml_delegate_is_lowered_here_and_its_compute_units_rewritten(tmp_path: Path) -> None:
    from executorch.exir._serialize._program import deserialize_pte_binary

    from harness.backends.executorch import with_compute_units

    model = load_model(resolve_model("digits_cnn"))  # max_pool2d with its default stride: made explicit
    with ConversionContext() as ctx:
        info = build_artifact(model, Fingerprint("d"), VARIANTS["et-coreml-fp16"], ctx, ArtifactCache(tmp_path))
    assert info["notes"]["delegate"] == "CoreMLBackend" and info["notes"]["delegation"]["delegated_nodes"] > 0
    assert info["deployment_target"] == "iOS17"
    rewritten = with_compute_units(Path(info["path"]).read_bytes(), COMPUTE_UNITS["ane"])
    (delegate,) = deserialize_pte_binary(rewritten).program.execution_plan[0].delegates
    specs = {spec.key: spec.value for spec in delegate.compile_specs}
    assert specs["compute_units"] == b"cpu_and_ne" and specs["model_compute_precision"] == b"float16"
    if sys.platform != "darwin":
        backend = ExecuTorchBackend()
        request = LoadRequest(info["path"], "cpu", 1, "digits_cnn")
        backend.prepare(request)
        with pytest.raises(DeviceUnavailable, match=r"^Core ML delegate requires macOS: .*CoreMLBackend"):
            backend.load(request)


@requires_executorch
@pytest.mark.skipif(
    importlib.util.find_spec("executorch.backends.apple.mps") is not None, reason="this executorch has MPS"
)
def test_mps_is_skipped_with_the_reason(tmp_path: Path) -> None:
    model = load_model(resolve_model("digits_cnn"))
    with pytest.raises(VariantSkipped, match=r"has no MPS delegate .*pytorch/executorch#22181"):
        build_artifact(model, Fingerprint("d"), VARIANTS["et-mps"], ConversionContext(), ArtifactCache(tmp_path))


@requires_executorch
@requires_macos
@pytest.mark.macos
@pytest.mark.parametrize("device", ["cpu", "ane"])
def test_core_ml_delegate_runs_on_macos_with_its_placement(tmp_path: Path, device: str) -> None:
    model = load_model(resolve_model("digits_cnn"))
    with ConversionContext() as ctx:
        info = build_artifact(model, Fingerprint("d"), VARIANTS["et-coreml-fp16"], ctx, ArtifactCache(tmp_path))
    inputs = model.example_inputs[0].clone(memory_format=torch.contiguous_format).numpy()
    try:
        outputs, placement, described = _outputs(info["path"], inputs, device)
    except DeviceUnavailable as exc:  # a virtualised Mac without a Neural Engine: refused, not measured
        assert device == "ane" and "prefer the Neural Engine" in str(exc)
        return
    with torch.inference_mode():
        reference = model.module(torch.from_numpy(inputs)).numpy()
    assert np.allclose(outputs, reference, atol=0.05)
    assert described["compute_units"] == COMPUTE_UNITS[device]
    assert "MLComputePlan" in placement["source"] and placement["by_device"].get(device, 0) > 0


UNEXPORTABLE = textwrap.dedent(
    """
    import torch


    class DataDependent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            if y.sum() > 0:  # a branch on a value: torch.export cannot trace it, eager and tracing can
                return y * 2
            return y


    def data_dependent():
        torch.manual_seed(0)
        return DataDependent().eval(), torch.ones(1, 4)
    """
)


@requires_executorch
def test_a_model_torch_export_cannot_take_fails_only_its_executorch_cases(tmp_path: Path) -> None:
    (tmp_path / "unexportable.py").write_text(UNEXPORTABLE)
    sys.path.insert(0, str(tmp_path))
    try:
        from unexportable import data_dependent

        module, example = data_dependent()
        with pytest.raises(Exception) as raised:
            torch.export.export(module, (example,))
    finally:
        sys.path.remove(str(tmp_path))
    out = tmp_path / "r.json"
    ref = "unexportable:data_dependent"
    variants = ("torch-fp32", "et-xnnpack-fp32", "et-xnnpack-int8")
    chosen = [word for name in variants for word in ("-v", name)]
    proc = bench("run", "smoke", "-m", ref, *chosen, "--budget", "0.4", "--json", str(out), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    cases = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    assert cases["torch-fp32"]["status"] == "ok"
    for name in ("et-xnnpack-fp32", "et-xnnpack-int8"):
        assert cases[name]["status"] == "failed"
        assert cases[name]["reason"] == f"conversion failed: torch.export failed: {first_line(raised.value)}"
