"""The messages a worker sends arrive in the parent as the typed records the child built."""

from __future__ import annotations

from collections.abc import Callable

from harness.process.isolation import run_isolated
from harness.process.messages import ArtifactBuilt, Diagnosis, GenerationTiming, KvCache, Measured
from harness.results.schema import (
    ArtifactInfo,
    DiagnosisReport,
    EnergyStats,
    GpuMemory,
    LayerComparison,
    MemoryStats,
    ParityResult,
    ThermalState,
)


def _measured() -> Measured:
    return Measured(
        cold_ms=12.5,
        warm_ms=3.0,
        first_inference_ms=1.5,
        calls_per_sample=4,
        samples_ms=[1.0, 1.1, 0.9],
        memory=MemoryStats("psutil", 10, 20, 10, 25, 30, GpuMemory("nvml (process)", used_bytes=1 << 20)),
        energy=EnergyStats(cpu_ms_per_inference=0.8, missing_channels=["GPU"]),
        parity=ParityResult(passed=True, gate={"cosine_min": 0.99}, metrics={"cosine_min": 1.0}, samples=8),
        runtime={"onnxruntime": "1.32.0", "providers": ["CPUExecutionProvider"]},
        thermal=None,
        thermal_state=ThermalState("linux cpufreq", "nominal", "nominal"),
        placement={"source": "onnxruntime graph assignment", "by_device": {"cpu": 9}},
        generation=GenerationTiming(
            lengths=[16],
            new_tokens=8,
            rounds=2,
            ttft_ms={16: [2.0, 2.1]},
            decode_ms={16: [0.5, 0.6]},
            peak_bytes={24: 1000},
            decode_peak_bytes={24: 900},
            decode_cpu_ms_per_token=0.4,
            kv=KvCache("graph inputs and outputs, fp32, grows with the context", bytes_per_token=512),
        ),
    )


def _diagnosis() -> Diagnosis:
    return Diagnosis(DiagnosisReport("stem", 30.0, [], [], [LayerComparison("stem", "t0", 12.0, 0.5, 0)], "below"))


def _send_records(send: Callable[[object], None]) -> None:
    send(_measured())
    send(ArtifactBuilt("onnx-fp32", "ok", info=ArtifactInfo(path="/tmp/model.onnx", size_bytes=64, files=["a"])))
    send(_diagnosis())


def test_a_worker_s_records_arrive_typed_and_equal_across_the_process_boundary() -> None:
    outcome = run_isolated(_send_records, (), 60)
    assert outcome.failure is None
    measured, built, diagnosis = outcome.messages
    assert measured == _measured()
    assert isinstance(measured.memory, MemoryStats) and isinstance(measured.memory.gpu, GpuMemory)
    assert isinstance(measured.parity, ParityResult) and measured.parity.passed
    assert isinstance(measured.thermal_state, ThermalState) and measured.generation is not None
    assert measured.generation.ttft_ms[16] == [2.0, 2.1]  # prompt lengths stay ints across the boundary
    assert isinstance(built.info, ArtifactInfo) and built.info.path == "/tmp/model.onnx"
    assert diagnosis == _diagnosis() and isinstance(diagnosis.diagnosis.layers[0], LayerComparison)
