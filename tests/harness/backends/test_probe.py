"""`bench devices --check`: what really ran where, through each backend's own load path."""

from __future__ import annotations

import importlib.util
import platform
import re
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from harness.backends.base import LoadRequest
from harness.backends.executorch import EXECUTORCH_COREML
from harness.backends.onnxruntime import PROVIDERS, OnnxRuntimeBackend, onnx_probe_bytes, onnxruntime_placed
from harness.backends.probe import PROBE_MODEL_REF, probe_all, probe_device
from harness.backends.registry import BACKENDS
from harness.host import macos_version
from tests.conftest import bench


def _section(stdout: str, backend: str) -> list[str]:
    lines = stdout.splitlines()
    start = lines.index(backend) + 1
    return [line.strip() for line in lines[start : start + 3]]


def test_every_registered_backend_has_a_probe() -> None:
    assert all(cls.probe_kits for cls in BACKENDS.values())


def test_devices_check_reports_nodes_and_time_per_device() -> None:
    done = bench("devices", "--check")
    assert done.returncode == 0, done.stderr
    onnxruntime = _section(done.stdout, "onnxruntime")
    assert re.fullmatch(r"cpu: (\d+) of \1 nodes on CPUExecutionProvider, \d+(\.\d+)? ms", onnxruntime[0])
    torch_cpu = _section(done.stdout, "torch")[0]
    assert re.fullmatch(r"cpu: torch \S+ on cpu, \d+(\.\d+)? ms", torch_cpu)
    if sys.platform != "darwin":
        assert _section(done.stdout, "coreml") == [
            "cpu: Core ML runs only on macOS",
            "gpu: Core ML runs only on macOS",
            "ane: ane needs macOS on Apple silicon",
        ]
        assert onnxruntime[2] == "ane: CoreMLExecutionProvider not available in this onnxruntime build"
    if importlib.util.find_spec("executorch") is not None:
        executorch = _section(done.stdout, "executorch")
        assert re.fullmatch(r"cpu: (\d+) of \1 nodes in XnnpackBackend \(cpu \1\), \d+(\.\d+)? ms", executorch[0])
        if sys.platform != "darwin":
            assert executorch[1] == "gpu: gpu runs through ExecuTorch's Core ML delegate, which requires macOS"
            assert _section(done.stdout, EXECUTORCH_COREML) == [
                f"{device}: ExecuTorch's Core ML delegate requires macOS" for device in ("cpu", "gpu", "ane")
            ]


@pytest.mark.skipif(
    "AzureExecutionProvider" not in ort.get_available_providers(), reason="this onnxruntime build has no Azure EP"
)
def test_a_provider_that_took_no_node_is_reported_not_timed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered provider that takes nothing (as the CoreML one does on an Intel Mac) gets no time."""
    path = tmp_path / "probe.onnx"
    path.write_bytes(onnx_probe_bytes())
    monkeypatch.setitem(PROVIDERS, "gpu", [("AzureExecutionProvider", {})])
    request = LoadRequest(str(path), "gpu", 1, PROBE_MODEL_REF)
    probe = probe_device(OnnxRuntimeBackend(), request, [np.ones((1, 64), np.float32)], onnxruntime_placed)
    assert probe.ms is None and probe.placed is None and not probe.error
    assert probe.reason is not None and probe.reason.startswith("AzureExecutionProvider took 0 of ")


@pytest.mark.skipif(
    sys.platform != "darwin" or platform.machine() != "arm64" or macos_version() < (14, 4),
    reason="requires macOS 14.4+ on Apple silicon (MLComputePlan)",
)
def test_coreml_probe_says_what_each_compute_unit_really_ran() -> None:
    lines = {probe.device: probe for probe in probe_all(BACKENDS.values()) if probe.backend == "coreml"}
    assert not any(probe.error for probe in lines.values()), lines
    assert lines["cpu"].placed is not None and re.fullmatch(r"(\d+) of \1 ops prefer the CPU", lines["cpu"].placed)
    ane = lines["ane"]
    if ane.placed is None:  # a virtualised runner: said, not mislabelled
        assert ane.reason is not None and "ops prefer the Neural Engine" in ane.reason
    else:
        assert re.fullmatch(r"[1-9]\d* of \d+ ops prefer the Neural Engine", ane.placed) and ane.ms is not None


@pytest.mark.skipif(
    sys.platform != "darwin" or importlib.util.find_spec("executorch") is None,
    reason="requires macOS (ExecuTorch's Core ML delegate) and executorch",
)
def test_executorch_probe_runs_the_core_ml_delegate_on_every_device() -> None:
    """The load path of a Core ML program (staging, every partition's plan) is probed, not only XNNPACK's."""
    lines = {probe.device: probe for probe in probe_all(BACKENDS.values()) if probe.section == EXECUTORCH_COREML}
    assert set(lines) == {"cpu", "gpu", "ane"} and not any(probe.error for probe in lines.values()), lines
    assert lines["cpu"].placed is not None and " nodes in CoreMLBackend (" in lines["cpu"].placed


def test_a_coreml_plan_below_macos_14_4_says_it_needs_14_4_not_zero_ops() -> None:
    from harness.backends.coreml import plan_unavailable, preference

    plan = {"source": plan_unavailable((14, 2))}
    line = preference(plan, "cpu")
    assert line == "placement unknown (unavailable: MLComputePlan needs macOS 14.4; this is macOS 14.2)"
    assert "0 of 0" not in line


@pytest.mark.parametrize(
    ("machine", "translated", "host"),
    [("x86_64", 1, "rosetta"), ("x86_64", 0, "intel"), ("x86_64", None, "intel"), ("arm64", 0, "apple-silicon")],
)
def test_rosetta_is_told_from_an_intel_mac_by_proc_translated(machine: str, translated: int | None, host: str) -> None:
    from harness.backends.coreml import unavailable_reason
    from harness.host import ROSETTA, mac_host

    assert mac_host(machine, translated) == host
    reason = unavailable_reason("ane", "Darwin", machine, True, translated)
    expected = {"rosetta": ROSETTA, "intel": "ane needs macOS on Apple silicon", "apple-silicon": None}[host]
    assert reason == expected


@pytest.mark.skipif(sys.platform != "darwin", reason="requires macOS (sysctl.proc_translated)")
def test_proc_translated_reads_this_process() -> None:
    from harness.host import mac_host, proc_translated

    value = proc_translated()
    assert value in (0, 1, None)
    assert (mac_host(platform.machine(), value) == "rosetta") == (value == 1)
