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
from converters.executorch import ET_MISSING
from converters.fingerprint import Fingerprint, fingerprint_model
from harness.accuracy.diagnose import executorch_not_diagnosed
from harness.backends.base import DeviceUnavailable, LoadRequest
from harness.backends.executorch import (
    COMPUTE_UNITS,
    COREML_OPS,
    GRAPH_NODES,
    PORTABLE,
    ExecuTorchBackend,
    delegate_refusal,
    delegation_placement,
    program_notes,
    unavailable_reason,
)
from harness.backends.registry import format_backend
from harness.orchestrate.ab import Side, stage_programs
from harness.orchestrate.prepare import model_inputs
from harness.pairing.sequential import ROUNDS_STATISTIC
from profiles.catalog import VARIANTS
from profiles.errors import ConfigError, first_line
from profiles.zoo import load_model, resolve_model
from tests.conftest import ROOT, bench

ET_VARIANTS = ("et-xnnpack-fp32", "et-xnnpack-int8", "et-coreml-fp16", "et-mps")
requires_executorch = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None, reason=ET_MISSING
)  # fmt: skip
requires_macos = pytest.mark.skipif(sys.platform != "darwin", reason="requires macOS (ExecuTorch's Core ML delegate)")


def test_the_variants_are_in_the_catalog_and_reach_the_backend() -> None:
    assert all(VARIANTS[name].format == "executorch" for name in ET_VARIANTS)
    assert format_backend("executorch") == "executorch"
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


# A Core ML program's delegation notes: 9 nodes delegated, 3 outside the delegate (one a `getitem`).
CORE_ML_NOTES = {
    "delegate": "CoreMLBackend",
    "delegation": {
        "delegated_nodes": 9,
        "non_delegated_nodes": 3,
        "by_operator": {"getitem": {"delegated": 0, "non_delegated": 1}},
    },
}


def test_placement_counts_portable_kernels_on_the_cpu_and_labels_an_unchecked_core_ml_request() -> None:
    notes = CORE_ML_NOTES
    unchecked = delegation_placement(notes, None, "ane")
    assert unchecked["by_device"] == {"coreml (requested ane)": 9, "cpu": 2}  # getitem only unpacks outputs
    assert unchecked["by_device_counts"] == GRAPH_NODES


def test_a_compute_plan_counts_core_ml_ops_by_device_and_keeps_graph_nodes_apart() -> None:
    """MLComputePlan counts MIL ops inside the delegate; the nodes outside it are FX graph nodes: two units,
    never added together."""
    notes = CORE_ML_NOTES
    planned = delegation_placement(notes, {"source": "MLComputePlan", "by_device": {"ane": 7, "cpu": 1}}, "ane")
    assert planned["by_device"] == {"ane": 7, "cpu": 1}
    assert planned["by_device_counts"] == COREML_OPS
    assert planned["by_delegate"] == {"CoreMLBackend": 9, "portable kernels": 2}


def test_a_failing_executorch_variant_says_why_it_is_not_diagnosed_by_layer() -> None:
    notes = {"delegate": "XnnpackBackend", "delegation": {"delegated_nodes": 27, "non_delegated_nodes": 1}}
    summary = executorch_not_diagnosed(notes).summary
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
    kept, staged = stage_programs(sides, "cpu", work, 120, log)
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
        stage_programs([Side("garbage.pte", None, str(garbage), "executorch")], "cpu", work, 120, log)


@pytest.mark.slow
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


class TwoBlocks(torch.nn.Module):
    """Two linear blocks with a ReLU between: a Core ML partitioner told to skip the ReLU makes two partitions."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(8, 8)
        self.second = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(x)))


def _lower_to_core_ml(directory: Path, skip: list[str]) -> Path:
    """A Core ML program and its notes, as the converter writes them (lowered here: coremltools converts
    on Linux)."""
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    from converters.executorch import delegation, import_exir

    exir = import_exir()
    torch.manual_seed(0)
    module, example = TwoBlocks().eval(), torch.rand(1, 8)
    specs = CoreMLBackend.generate_compile_specs(
        compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS17
    )
    partitioner = CoreMLPartitioner(compile_specs=specs, skip_ops_for_coreml_delegation=skip)
    edge = exir.to_edge_transform_and_lower(torch.export.export(module, (example,)), partitioner=[partitioner])
    directory.mkdir()
    (directory / "model.pte").write_bytes(edge.to_executorch().buffer)
    notes = {"delegate": "CoreMLBackend", "delegation": delegation(edge)}
    (directory / "delegation.json").write_text(json.dumps(notes))
    np.savez(directory / "inputs.npz", example.numpy())
    return directory / "model.pte"


@pytest.fixture(scope="module")
def core_ml_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Programs of one and of two Core ML partitions, by partition count."""
    pytest.importorskip("executorch", reason=ET_MISSING)
    root = tmp_path_factory.mktemp("core-ml-programs")
    return {1: _lower_to_core_ml(root / "one", []), 2: _lower_to_core_ml(root / "two", ["aten.relu.default"])}


@requires_executorch
@pytest.mark.parametrize("count", [1, 2])
def test_every_core_ml_partition_is_extracted_down_to_the_package_compile_model_takes(
    core_ml_programs: dict[int, Path], tmp_path: Path, count: int
) -> None:
    """`extract_coreml_models` returns `out/model_N` directories; `compile_model` takes only a path ending in
    .mlpackage or .mlmodel (coremltools 9.0): the package inside each directory is what it gets."""
    from harness.backends.executorch import coreml_partitions

    partitions = coreml_partitions(core_ml_programs[count].read_bytes(), tmp_path / "out")
    assert len(partitions) == count
    for n, partition in enumerate(partitions, start=1):
        package = Path(partition.package)
        assert package == (tmp_path / "out" / f"model_{n}" / "lowered_module" / "model.mlpackage").resolve()
        assert package.is_dir() and (package / "Manifest.json").is_file()
        assert partition.package.rstrip("/").endswith(".mlpackage")  # compile_model's own test of the path
        assert partition.identifier.startswith("executorch_")
    assert len({p.identifier for p in partitions}) == count


@requires_executorch
def test_a_plan_that_cannot_be_read_runs_cpu_and_all_under_the_request_and_refuses_gpu_and_ane(
    core_ml_programs: dict[int, Path], tmp_path: Path
) -> None:
    from harness.backends.coreml import plan_refusal
    from harness.backends.executorch import coreml_partitions, readable_plan

    partitions = coreml_partitions(core_ml_programs[2].read_bytes(), tmp_path / "out")
    plan = readable_plan(partitions, "ane", tmp_path) if sys.platform != "darwin" else {"source": "unavailable: x"}
    assert plan["source"].startswith("unavailable: ") and "by_device" not in plan  # Linux: compile_model refuses
    notes = json.loads((core_ml_programs[2].parent / "delegation.json").read_text())
    for device in ("cpu", "all"):
        assert plan_refusal(plan, device, None) is None
        placement = delegation_placement(notes, plan, device)
        requested = {f"coreml (requested {device})": 2, "cpu": 2}  # the linears in; the ReLU and its alloc out
        assert placement["by_device"] == requested and placement["by_device_counts"] == GRAPH_NODES
    for device in ("gpu", "ane"):
        assert plan_refusal(plan, device, None) == f"{device} placement cannot be checked ({plan['source']})"


def _delegates(pte: bytes) -> list:
    from executorch.exir._serialize._program import _flatbuffer_to_program, _get_extended_header

    header = _get_extended_header(pte)
    assert header is not None and header.is_valid()  # segments follow the flatbuffer
    program = _flatbuffer_to_program(pte[: header.program_size])
    assert not program.backend_delegate_data  # nothing inlined
    return [delegate for plan in program.execution_plan for delegate in plan.delegates]


@requires_executorch
def test_a_core_ml_program_is_staged_per_device_with_its_segments_kept_apart(
    core_ml_programs: dict[int, Path], tmp_path: Path
) -> None:
    from executorch.exir.schema import DataLocation

    from harness.backends.executorch import coreml_partitions, stage_program

    source = core_ml_programs[2]
    staged = stage_program(source, "ane", tmp_path / "ane", rewrite=True)
    delegates = _delegates(staged.read_bytes())
    assert [d.id for d in delegates] == ["CoreMLBackend", "CoreMLBackend"]
    assert all(d.processed.location == DataLocation.SEGMENT for d in delegates)
    for delegate in delegates:
        assert {spec.key: spec.value for spec in delegate.compile_specs}["compute_units"] == b"cpu_and_ne"
    assert abs(staged.stat().st_size - source.stat().st_size) < 64  # the shipped layout, not the blobs inlined
    notes = json.loads((staged.parent / "delegation.json").read_text())
    expected = [p.identifier for p in coreml_partitions(source.read_bytes(), tmp_path / "out")]
    assert notes["compute_units"] == "cpu_and_ne" and notes["coreml_partitions"] == expected
    assert notes["delegation"] == json.loads((source.parent / "delegation.json").read_text())["delegation"]
    assert "source" in notes["compute_plan"]
    linked = stage_program(source, "ane", tmp_path / "as-is", rewrite=False)
    assert linked.is_symlink() and linked.resolve() == source.resolve()


@requires_executorch
def test_staging_fails_one_program_alone(core_ml_programs: dict[int, Path], tmp_path: Path) -> None:
    from harness.orchestrate.staging import StageJob, stage_isolated

    garbage = tmp_path / "garbage" / "model.pte"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a program")
    jobs = [
        StageJob("executorch", str(garbage), "cpu", str(tmp_path / "s0"), True),
        StageJob("executorch", str(core_ml_programs[1]), "gpu", str(tmp_path / "s1"), True),
    ]
    failed, staged = stage_isolated(jobs, 300, tmp_path / "staging.log")
    assert failed.path is None and failed.error
    assert staged.error is None and staged.path == str(tmp_path / "s1" / "model.pte")
    (delegate,) = _delegates(Path(staged.path).read_bytes())
    assert {spec.key: spec.value for spec in delegate.compile_specs}["compute_units"] == b"cpu_and_gpu"


MEASURE_AND_REPORT_IMPORTS = """
import json, sys
from harness.orchestrate.cases import measure_case
from harness.process.specs import WorkerSpec
spec = WorkerSpec("m", "executorch", sys.argv[2], sys.argv[1], sys.argv[3], None, "generic", {}, "", 0, 0.05, 1.0, 1, 1)
sent = []
measure_case(spec, False, sent.append)
print(json.dumps({"sent": [type(m).__name__ + ": " + str(getattr(m, "reason", "")) for m in sent],
                  "exir": "executorch.exir" in sys.modules}))
"""


@requires_executorch
def test_a_measuring_process_loads_the_staged_program_without_the_exporter(
    core_ml_programs: dict[int, Path], tmp_path: Path
) -> None:
    import subprocess

    from harness.backends.executorch import stage_program

    staged = stage_program(core_ml_programs[1], "cpu", tmp_path / "cpu", rewrite=True)
    inputs = core_ml_programs[1].parent / "inputs.npz"
    done = subprocess.run(
        [sys.executable, "-c", MEASURE_AND_REPORT_IMPORTS, str(staged), "cpu", str(inputs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["exir"] is False
    if sys.platform != "darwin":  # the Linux runtime lacks the delegate: refused at load, after prepare
        assert len(report["sent"]) == 1
        assert report["sent"][0].startswith("Unavailable: Core ML delegate requires macOS: ")
    else:
        assert report["sent"][0].startswith("Measured")


def test_the_compiled_model_cache_entries_are_removed_before_the_timed_load(tmp_path: Path) -> None:
    """The runtime's asset manager keeps `<caches>/executorchcoreml/<identifier>_<compute units>.mlmodelc`
    (ETCoreMLModelManager add_compute_unit, ETCoreMLAssetManager storeAssetAtURL): gone, the load compiles."""
    from harness.backends.executorch import PREWARM, clear_compiled_cache, compiled_cache_entries, coreml_describe

    entries = compiled_cache_entries(["executorch_a", "executorch_b"], "cpu_and_ne", tmp_path)
    assert entries == [
        tmp_path / "executorchcoreml" / "executorch_a_cpu_and_ne.mlmodelc",
        tmp_path / "executorchcoreml" / "executorch_b_cpu_and_ne.mlmodelc",
    ]
    other_units = tmp_path / "executorchcoreml" / "executorch_a_all.mlmodelc"
    for entry in (entries[0], other_units):
        (entry / "weights").mkdir(parents=True)
        (entry / "weights" / "weight.bin").write_bytes(b"0" * 16)
    state = clear_compiled_cache(entries)
    assert state.cold_load == "compiled" and "1 cached compiled model(s) removed" in state.detail
    assert not entries[0].exists() and other_units.exists()  # another device's entry is not this case's
    described = coreml_describe("cpu_and_ne", state)
    assert described["cold_load"] == "compiled" and described["prewarm"] == PREWARM
    assert "first_inference_ms" in PREWARM and "cold_ms" in PREWARM


requires_compute_plan = pytest.mark.skipif(
    sys.platform != "darwin", reason="requires macOS 14.4+ (MLComputePlan, ExecuTorch's Core ML delegate)"
)


@requires_executorch
@requires_compute_plan
@pytest.mark.macos
def test_every_core_ml_partition_is_planned_on_macos(core_ml_programs: dict[int, Path], tmp_path: Path) -> None:
    from harness.backends.executorch import compute_plan, coreml_partitions

    partitions = coreml_partitions(core_ml_programs[2].read_bytes(), tmp_path / "out")
    plan = compute_plan(partitions, "cpu", tmp_path)
    assert plan["source"] == "MLComputePlan" and len(plan["partitions"]) == 2
    assert plan["by_device"]["cpu"] == sum(p["by_device"].get("cpu", 0) for p in plan["partitions"]) > 0


@requires_executorch
@requires_compute_plan
@pytest.mark.macos
def test_each_process_cold_load_compiles_on_macos(core_ml_programs: dict[int, Path], tmp_path: Path) -> None:
    from harness.backends.executorch import compiled_cache_entries, stage_program, user_caches

    staged = stage_program(core_ml_programs[2], "cpu", tmp_path / "cpu", rewrite=True)
    notes = json.loads((staged.parent / "delegation.json").read_text())
    entries = compiled_cache_entries(notes["coreml_partitions"], "cpu_only", user_caches())
    for _ in range(2):
        inputs = np.load(core_ml_programs[2].parent / "inputs.npz")["arr_0"]
        _, placement, described = _outputs(str(staged), inputs, "cpu")
        assert described["cold_load"] == "compiled" and "2 partition(s)" in described["cold_load_detail"]
        assert all(entry.is_dir() for entry in entries)  # the runtime's cache layout, as read from its source
        assert (
            placement["by_device_counts"]
            == "Core ML ops inside the delegate (MLComputePlan); graph nodes outside it in by_delegate"
        )


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
    assert described["cold_load"] == "compiled" and "prewarm" in described["prewarm"]
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


@pytest.mark.slow
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


@requires_executorch
def test_a_run_stages_each_core_ml_program_once_per_device_and_fails_only_a_broken_one(
    core_ml_programs: dict[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench run` on a host with the delegate (the predicate set here; the staging is real): every case of
    one program and device shares one staged program; a program that cannot be staged fails its case."""
    import harness.backends.executorch
    from harness.orchestrate.runner import Runner, _Progress
    from harness.process.specs import WorkerSpec
    from harness.results.schema import ArtifactInfo
    from profiles.schema import load_profile

    monkeypatch.setattr(harness.backends.executorch, "coreml_host", lambda: True)
    broken = tmp_path / "broken" / "model.pte"
    broken.parent.mkdir()
    broken.write_bytes(b"not a program")
    (broken.parent / "delegation.json").write_text(json.dumps({"delegate": "CoreMLBackend", "delegation": None}))
    profile = load_profile("smoke", {"variants": ["et-coreml-fp16", "et-xnnpack-fp32"]})
    runner = Runner(profile, tmp_path / "r.json")
    coreml_case, xnnpack_case = sorted(runner.cases, key=lambda c: c.variant.name)

    def item(case, path: Path, delegate: str) -> _Progress:
        spec = WorkerSpec("digits_cnn", "executorch", "cpu", str(path), "", None, "generic", {}, "", 0, 0, 1, 1, None)
        return _Progress(case, spec, ArtifactInfo(path=str(path), notes={"delegate": delegate}))

    good = [item(coreml_case, core_ml_programs[1], "CoreMLBackend") for _ in range(2)]
    xnnpack = item(xnnpack_case, tmp_path / "x.pte", "XnnpackBackend")
    bad = item(coreml_case, broken, "CoreMLBackend")
    kept = runner._stage_programs([*good, xnnpack, bad], tmp_path / "work")
    assert kept == [*good, xnnpack]
    assert good[0].spec.artifact_path == good[1].spec.artifact_path != str(core_ml_programs[1])
    (delegate,) = _delegates(Path(good[0].spec.artifact_path).read_bytes())
    assert {spec.key: spec.value for spec in delegate.compile_specs}["compute_units"] == b"cpu_only"
    assert xnnpack.spec.artifact_path == str(tmp_path / "x.pte")
    (failed,) = runner.record.results
    assert failed.status == "failed" and failed.reason.startswith("staging the program for cpu failed: ")
    assert good[0].artifact.path == str(core_ml_programs[1])  # the result reports the program as built
