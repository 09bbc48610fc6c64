"""The measurement worker, run in this process on a real ONNX Runtime artifact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from converters.base import ConversionContext
from converters.build import build_artifact
from converters.cache import ArtifactCache
from converters.fingerprint import Fingerprint
from harness.backends.base import LoadRequest, Session
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.backends.registry import BACKENDS
from harness.orchestrate.cases import measure_case
from harness.process.messages import Measured
from harness.process.specs import WorkerSpec
from harness.results.schema import ThermalState
from profiles.catalog import VARIANTS
from profiles.zoo import LoadedModel


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> WorkerSpec:
    torch.manual_seed(0)
    model = LoadedModel(torch.nn.Linear(4, 2).eval(), (torch.ones(1, 4),))
    root = tmp_path_factory.mktemp("worker")
    artifact = build_artifact(
        model, Fingerprint("tiny"), VARIANTS["onnx-fp32"], ConversionContext(scratch_root=root), ArtifactCache(root)
    )
    inputs = root / "inputs.npz"
    np.savez(inputs, np.ones((1, 4), np.float32))
    return WorkerSpec(
        model_ref="unused",
        backend="onnxruntime",
        device="cpu",
        artifact_path=artifact["path"],
        inputs_path=str(inputs),
        parity_path=None,
        task="generic",
        gate={},
        parity_source="torch fp32",
        warmup=2,
        budget_s=0.05,
        min_sample_ms=0.1,
        threads=1,
        calls_per_sample=1,
    )


def _measured(spec: WorkerSpec, do_parity: bool = False) -> Measured:
    messages: list[Any] = []
    measure_case(spec, do_parity, messages.append)
    assert [type(m) for m in messages] == [Measured]
    return messages[0]


def test_thermal_state_at_the_start_and_end_of_sampling(spec: WorkerSpec) -> None:
    measured = _measured(spec)
    state = measured.thermal_state
    assert isinstance(state, ThermalState) and isinstance(state.source, str)
    assert state.start is None or isinstance(state.start, str)
    assert measured.thermal is None or isinstance(measured.thermal, str)  # the parent dedups warning strings


def test_every_process_reports_placement_not_only_the_first(spec: WorkerSpec) -> None:
    for do_parity in (True, False):  # the first process of a case, then the others
        placement = _measured(spec, do_parity).placement
        assert placement["source"] == "onnxruntime graph assignment"
        assert placement["by_device"] == {"cpu": 1}


class _SessionFailingAfterSampling(Session):
    """A real ONNX Runtime session whose reports after sampling raise."""

    def __init__(self, real: Session) -> None:
        self.real = real

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.real.run(inputs)

    def runner(self, inputs: list[np.ndarray]) -> Callable[[], Any]:
        return self.real.runner(inputs)

    def describe(self) -> dict[str, Any]:
        raise TypeError("describe broke")

    def placement(self) -> dict[str, Any]:
        raise RuntimeError("placement broke")


class _BackendWithAFailingSession(OnnxRuntimeBackend):
    closed: ClassVar[list[bool]] = []

    def load(self, request: LoadRequest) -> Session:
        return _SessionFailingAfterSampling(super().load(request))

    def close(self) -> None:
        self.closed.append(True)


def test_describe_or_placement_failing_keeps_the_measurement(
    spec: WorkerSpec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The result names the failed call; its traceback goes to the log (the case's log in a worker)."""
    monkeypatch.setitem(BACKENDS, "failing-describe", _BackendWithAFailingSession)
    measured = _measured(replace(spec, backend="failing-describe"))
    assert len(measured.samples_ms) >= 5 and all(v > 0 for v in measured.samples_ms)
    assert measured.runtime == {"error": "TypeError: describe broke"}
    assert measured.placement == {"error": "RuntimeError: placement broke"}
    logged = [r for r in caplog.records if r.name == "harness.measure.loop"]
    assert [r.exc_info[1].args[0] for r in logged if r.exc_info and r.exc_info[1]] == [
        "describe broke",
        "placement broke",
    ]
    assert _BackendWithAFailingSession.closed == [True]  # the backend cleaned up after the warm load
