"""Backends: device mapping, refusals with reasons, and what runs short of a Mac."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from converters.base import ConversionContext
from converters.build import build_artifact
from converters.cache import ArtifactCache
from converters.fingerprint import Fingerprint
from harness.backends.base import DeviceUnavailable, LoadRequest
from harness.backends.coreml import (
    COMPUTE_UNITS,
    CoreMLBackend,
    macos_reason,
    plan_refusal,
    preference,
    summarise_plan,
    unavailable_reason,
)
from harness.backends.onnxruntime import (
    PROVIDERS,
    RECORD_ASSIGNMENT,
    OnnxRuntimeBackend,
    assignment_refusal,
    count_assignment,
    summarise_assignment,
)
from harness.backends.registry import BACKENDS, BACKENDS_VARIABLE, BUILT_IN, backends, format_backend, suffix_backends
from harness.backends.torch_eager import TorchBackend
from harness.host import macos_version
from harness.measure.loop import load_cold
from harness.measure.memory import PeakTracker
from profiles.catalog import VARIANTS
from profiles.errors import ConfigError
from profiles.zoo import LoadedModel
from tools.slowed_backend import SlowedOnnxRuntime

requires_macos = pytest.mark.skipif(sys.platform != "darwin", reason="requires macOS (Core ML prediction)")
requires_compute_plan = pytest.mark.skipif(
    sys.platform != "darwin" or platform.machine() != "arm64" or macos_version() < (14, 4),
    reason="requires macOS 14.4+ on Apple silicon (MLComputePlan)",
)


def test_every_format_has_a_registered_backend() -> None:
    assert {v.format for v in VARIANTS.values()} == {cls.format for cls in BACKENDS.values()}
    assert len(BACKENDS) == len(BUILT_IN)  # one name each
    for name, cls in BACKENDS.items():
        assert cls.name == name and cls.devices and format_backend(cls.format) == name


def test_the_suffixes_bench_ab_takes_come_from_the_backend_classes() -> None:
    assert suffix_backends() == {
        ".onnx": "onnxruntime",
        ".mlpackage": "coreml",
        ".mlmodel": "coreml",
        ".pte": "executorch",
    }
    assert [cls.name for cls in BACKENDS.values() if cls.directory_suffixes] == ["coreml"]


def test_a_backend_named_in_the_environment_replaces_the_built_in_of_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKENDS_VARIABLE, "tools.slowed_backend:SlowedOnnxRuntime")
    assert backends()["onnxruntime"] is SlowedOnnxRuntime and BACKENDS["onnxruntime"] is OnnxRuntimeBackend
    assert format_backend("onnx") == "onnxruntime" and list(backends()) == list(BACKENDS)


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        ("tools.slowed_backend:Missing", "cannot import 'tools.slowed_backend:Missing': module .* no attribute"),
        ("no_such_module:Backend", "cannot import 'no_such_module:Backend': No module named"),
        ("tools.slowed_backend:slowed", "'tools.slowed_backend:slowed' is not a Backend subclass"),
    ],
)
def test_a_backend_reference_that_names_no_backend_is_a_config_error(
    reference: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BACKENDS_VARIABLE, reference)
    with pytest.raises(ConfigError, match=rf"^\$ONDEVICE_BENCH_BACKENDS: {why}"):
        backends()


def test_coreml_compute_units_match_coremltools() -> None:
    import coremltools as ct

    assert {d: getattr(ct.ComputeUnit, u).name for d, u in COMPUTE_UNITS.items()} == {
        "cpu": "CPU_ONLY",
        "gpu": "CPU_AND_GPU",
        "ane": "CPU_AND_NE",
        "all": "ALL",
    }


@pytest.mark.parametrize(
    ("device", "system", "machine", "installed", "reason"),
    [
        ("ane", "Linux", "x86_64", True, "ane needs macOS on Apple silicon"),
        ("cpu", "Linux", "x86_64", True, "Core ML runs only on macOS"),
        ("ane", "Darwin", "x86_64", True, "ane needs macOS on Apple silicon"),
        ("gpu", "Darwin", "x86_64", True, None),
        ("ane", "Darwin", "arm64", False, "coremltools is not installed (pip install 'ondevice-bench[coreml]')"),
        ("ane", "Darwin", "arm64", True, None),
        ("tpu", "Darwin", "arm64", True, "coreml has no 'tpu' device (cpu, gpu, ane, all)"),
    ],
)
def test_coreml_refusals(device: str, system: str, machine: str, installed: bool, reason: str | None) -> None:
    assert unavailable_reason(device, system, machine, installed) == reason


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the refusal off macOS")
def test_coreml_backend_refuses_every_device_here() -> None:
    backend = CoreMLBackend()
    assert backend.available("ane") == "ane needs macOS on Apple silicon"
    assert backend.available("cpu") == "Core ML runs only on macOS"


# Plan-like objects with the attribute names MLComputePlan gives (coremltools 9.0).
class MLCPUComputeDevice: ...


class MLNeuralEngineComputeDevice: ...


@dataclass
class _Op:
    operator_name: str


@dataclass
class _Usage:
    preferred_compute_device: object


@dataclass
class _Cost:
    weight: float


def test_placement_summary_counts_ops_and_cost_per_device() -> None:
    ops = [_Op("ios17.const"), _Op("ios17.conv"), _Op("ios17.relu"), _Op("ios17.gather")]
    usage = {
        "ios17.conv": _Usage(MLNeuralEngineComputeDevice()),
        "ios17.relu": _Usage(MLNeuralEngineComputeDevice()),
        "ios17.gather": _Usage(MLCPUComputeDevice()),
    }
    cost = {"ios17.conv": _Cost(0.6), "ios17.relu": _Cost(0.1), "ios17.gather": _Cost(0.3)}
    summary = summarise_plan(ops, lambda op: usage.get(op.operator_name), lambda op: cost.get(op.operator_name))
    assert summary["by_device"] == {"ane": 2, "cpu": 1}
    assert summary["cost_share"] == pytest.approx({"ane": 0.7, "cpu": 0.3})
    assert [o["op"] for o in summary["ops"]] == ["ios17.conv", "ios17.relu", "ios17.gather"]


def test_placement_summary_without_costs_has_no_share() -> None:
    summary = summarise_plan([_Op("ios17.conv")], lambda op: _Usage(MLCPUComputeDevice()), lambda op: None)
    assert summary["by_device"] == {"cpu": 1} and summary["cost_share"] == {}


def _plan(*devices: object) -> dict:
    ops = [_Op(f"ios18.op{i}") for i in range(len(devices))]
    usage = {op.operator_name: _Usage(d) for op, d in zip(ops, devices, strict=True)}
    return summarise_plan(ops, lambda op: usage[op.operator_name], lambda op: _Cost(1 / len(ops)))


def test_ane_is_refused_when_no_op_prefers_it() -> None:
    """A float32-typed model: every op prefers the CPU under CPU_AND_NE, so it is not an ane case."""
    plan = _plan(MLCPUComputeDevice(), MLCPUComputeDevice(), MLCPUComputeDevice())
    reason = plan_refusal(plan, "ane", {"cpu", "gpu", "ane"})
    assert reason is not None and reason.startswith("0 of 3 ops prefer the Neural Engine (preferred: cpu 3)")
    assert "float32-typed" in reason
    assert plan_refusal(plan, "gpu", {"cpu", "gpu", "ane"}) == "0 of 3 ops prefer the GPU (preferred: cpu 3)"
    assert plan_refusal(plan, "cpu", None) is None and plan_refusal(plan, "all", None) is None


def test_a_device_the_host_does_not_expose_is_named() -> None:
    plan = _plan(MLCPUComputeDevice(), MLCPUComputeDevice())
    reason = plan_refusal(plan, "ane", {"cpu"})
    assert reason == (
        "0 of 2 ops prefer the Neural Engine (preferred: cpu 2): "
        "no Neural Engine visible to Core ML (virtualised runner?)"
    )


def test_one_op_preferring_the_device_is_enough_and_the_share_is_kept() -> None:
    plan = _plan(MLNeuralEngineComputeDevice(), MLNeuralEngineComputeDevice(), MLCPUComputeDevice())
    assert plan_refusal(plan, "ane", {"cpu", "ane"}) is None
    assert preference(plan, "ane") == "2 of 3 ops prefer the Neural Engine"
    assert plan["by_device"] == {"ane": 2, "cpu": 1}
    assert plan["cost_share"] == pytest.approx({"ane": 2 / 3, "cpu": 1 / 3})


def test_an_unreadable_plan_is_no_evidence_for_gpu_or_ane() -> None:
    plan = {"source": "unavailable: MLComputePlan needs macOS >= 14.4"}
    assert plan_refusal(plan, "ane", None) == (
        "ane placement cannot be checked (unavailable: MLComputePlan needs macOS >= 14.4)"
    )
    assert plan_refusal(plan, "cpu", None) is None


@pytest.mark.parametrize(
    ("macos", "device", "spec_version", "reason"),
    [
        ((12, 6), "ane", 7, "CPU_AND_NE needs macOS 13 or later; this is macOS 12.6"),
        ((12, 6), "cpu", 6, None),
        ((13, 5), "cpu", 8, "the model targets iOS17, which needs macOS 14+; this is macOS 13.5"),
        ((14, 6), "ane", 9, "the model targets iOS18, which needs macOS 15+; this is macOS 14.6"),
        ((15, 1), "ane", 9, None),
        ((14, 0), "gpu", 8, None),
    ],
)
def test_macos_version_floors(macos: tuple[int, ...], device: str, spec_version: int, reason: str | None) -> None:
    assert macos_reason(macos, device, spec_version) == reason


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    model = LoadedModel(torch.nn.Linear(4, 2).eval(), (torch.ones(1, 4),))
    cache = ArtifactCache(tmp_path_factory.mktemp("artifacts"))
    context = ConversionContext(scratch_root=tmp_path_factory.mktemp("scratch"))
    return build_artifact(model, Fingerprint("tiny"), VARIANTS["onnx-fp32"], context, cache)["path"]


@pytest.mark.skipif(sys.platform == "darwin", reason="the CoreML provider exists on macOS")
def test_onnxruntime_refuses_a_provider_it_did_not_take(tiny_onnx: str) -> None:
    backend = OnnxRuntimeBackend()
    assert backend.available("ane") == "CoreMLExecutionProvider not available in this onnxruntime build"
    with pytest.raises(DeviceUnavailable, match="CoreMLExecutionProvider not available"):
        backend.load(LoadRequest(tiny_onnx, "ane", 1, "unused"))


def test_onnxruntime_cpu_runs_and_reports_its_provider(tiny_onnx: str) -> None:
    session = OnnxRuntimeBackend().load(LoadRequest(tiny_onnx, "cpu", 1, "unused"))
    out = session.run([np.ones((1, 4), np.float32)])
    assert out[0].shape == (1, 2)
    assert session.describe()["providers"] == ["CPUExecutionProvider"]


def test_torch_has_no_ane_and_names_why_gpu_is_missing() -> None:
    backend = TorchBackend()
    assert backend.available("ane") == "torch has no 'ane' device (it runs cpu and gpu)"
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert backend.available("gpu") == "no CUDA or MPS device visible to torch"


@requires_macos
def test_coreml_predicts_on_macos(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LoadedModel(torch.nn.Linear(4, 2).eval(), (torch.ones(1, 4),))
    info = build_artifact(
        model, Fingerprint("tiny"), VARIANTS["coreml-fp32"], ConversionContext(), ArtifactCache(tmp_path)
    )
    backend = CoreMLBackend()
    request = LoadRequest(info["path"], "cpu", 1, "unused")
    backend.prepare(request)
    session = backend.load(request)
    out = session.run([np.ones((1, 4), np.float32)])
    expected = model.module(torch.ones(1, 4)).detach().numpy()
    assert np.allclose(out[0], expected, atol=1e-4)
    session.runner([np.ones((1, 4), np.float32)])()
    described = session.describe()
    assert described["compile_ms"] > 0 and described["core_ml_predict_ms_separate_instance"] > 0
    compiled = Path(backend.compiled.path)
    assert compiled.exists()
    backend.close()
    assert not compiled.exists() and not compiled.parent.exists()


@requires_compute_plan
def test_coreml_fp32_on_ane_is_refused_not_run_on_the_cpu(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LoadedModel(torch.nn.Linear(64, 64).eval(), (torch.ones(1, 64),))
    info = build_artifact(
        model, Fingerprint("tiny"), VARIANTS["coreml-fp32"], ConversionContext(), ArtifactCache(tmp_path)
    )
    backend = CoreMLBackend()
    request = LoadRequest(info["path"], "ane", 1, "unused")
    backend.prepare(request)
    with pytest.raises(DeviceUnavailable, match=r"^0 of \d+ ops prefer the Neural Engine"):
        backend.admit(backend.load(request), request)
    backend.close()


class _SlowAdmit(OnnxRuntimeBackend):
    """The real ONNX Runtime backend with a check after loading that takes a known 300 ms."""

    admitted = False

    def admit(self, session: Any, request: LoadRequest) -> None:
        started = time.perf_counter()
        while time.perf_counter() - started < 0.3:
            pass
        self.admitted = True


def test_the_cold_load_excludes_the_backends_checks_after_loading(tiny_onnx: str) -> None:
    """`load_cold` times `load` alone: Core ML's compute plan (a second load no app pays) runs in `admit`."""
    backend = _SlowAdmit()
    request = LoadRequest(tiny_onnx, "cpu", 1, "unused")
    backend.prepare(request)
    _, cold = load_cold(backend, request, PeakTracker())
    assert backend.admitted and cold.cold_ms < 300


@requires_compute_plan
def test_coreml_cold_load_excludes_the_compute_plan(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LoadedModel(torch.nn.Linear(64, 64).eval(), (torch.ones(1, 64),))
    info = build_artifact(
        model, Fingerprint("tiny"), VARIANTS["coreml-fp16"], ConversionContext(), ArtifactCache(tmp_path)
    )
    backend = CoreMLBackend()
    request = LoadRequest(info["path"], "cpu", 1, "unused")
    backend.prepare(request)
    loaded = backend.load(request)
    assert loaded.placement() == {}  # nothing read inside the timed load
    backend.admit(loaded, request)
    assert loaded.plan is not None and loaded.plan.plan_ms > 0
    assert loaded.placement()["source"] == "MLComputePlan"
    backend.close()


def _three_node_graph() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Sigmoid", ["a"], ["b"], name="sigmoid"),
        helper.make_node("Add", ["b", "x"], ["y"], name="add"),
    ]
    graph = helper.make_graph(nodes, "three", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _recorded_session(providers: list[str]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry(RECORD_ASSIGNMENT, "1")
    return ort.InferenceSession(_three_node_graph(), options, providers=providers)


def test_graph_assignment_counts_nodes_per_provider_on_a_real_session() -> None:
    counts = count_assignment(_recorded_session(["CPUExecutionProvider"]).get_provider_graph_assignment_info())
    assert counts == {"CPUExecutionProvider": 3}
    assert summarise_assignment(counts, "cpu") == {
        "source": "onnxruntime graph assignment",
        "by_device": {"cpu": 3},
        "by_provider": {"CPUExecutionProvider": 3},
    }
    assert assignment_refusal(counts, "CPUExecutionProvider") is None


def test_a_provider_absent_from_the_assignment_is_refused() -> None:
    counts = count_assignment(_recorded_session(["CPUExecutionProvider"]).get_provider_graph_assignment_info())
    assert assignment_refusal(counts, "CoreMLExecutionProvider") == (
        "CoreMLExecutionProvider took 0 of 3 nodes (CPUExecutionProvider 3)"
    )


@pytest.mark.skipif(
    "AzureExecutionProvider" not in ort.get_available_providers(), reason="this onnxruntime build has no Azure EP"
)
def test_a_registered_provider_that_took_no_node_is_refused_at_load(
    tiny_onnx: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Azure provider registers, stays in get_providers() and takes no node: what the CoreML provider
    does on an Intel Mac asked for CPUAndNeuralEngine. The case must be refused, not measured on the CPU."""
    session = _recorded_session(["AzureExecutionProvider", "CPUExecutionProvider"])
    assert "AzureExecutionProvider" in session.get_providers()
    monkeypatch.setitem(PROVIDERS, "gpu", [("AzureExecutionProvider", {})])
    with pytest.raises(DeviceUnavailable, match=r"^AzureExecutionProvider took 0 of \d+ nodes \(CPUExecutionProvider"):
        OnnxRuntimeBackend().load(LoadRequest(tiny_onnx, "gpu", 1, "unused"))


def test_the_coreml_share_is_labelled_as_requested_never_as_the_device() -> None:
    counts = {"CoreMLExecutionProvider": 12, "CPUExecutionProvider": 2}
    summary = summarise_assignment(counts, "ane")
    assert summary["by_device"] == {"coreml (requested ane)": 12, "cpu": 2}
    assert "ane" not in summary["by_device"]
    assert summarise_assignment(counts, "gpu")["by_device"]["coreml (requested gpu)"] == 12


def test_onnxruntime_placement_comes_from_the_timed_session(tiny_onnx: str) -> None:
    session = OnnxRuntimeBackend().load(LoadRequest(tiny_onnx, "cpu", 1, "unused"))
    placement = session.placement()
    assert placement["source"] == "onnxruntime graph assignment"
    assert placement["by_device"] == {"cpu": 1} and placement["by_provider"] == {"CPUExecutionProvider": 1}


@pytest.mark.skipif(
    sys.platform != "darwin" or platform.machine() != "arm64", reason="requires macOS on Apple silicon (CoreML EP)"
)
def test_coreml_provider_counts_the_members_of_its_fused_partition(tmp_path: Path) -> None:
    path = tmp_path / "three.onnx"
    path.write_bytes(_three_node_graph())
    session = OnnxRuntimeBackend().load(LoadRequest(str(path), "ane", 1, "unused"))
    placement = session.placement()
    assert placement["by_provider"].get("CoreMLExecutionProvider") == 3  # one fused partition, three nodes
    assert placement["by_device"] == {"coreml (requested ane)": 3}
