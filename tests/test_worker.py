"""The measurement worker, run in this process on a real ONNX Runtime artifact."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from converters.base import ConversionContext
from converters.build import build_artifact
from converters.cache import ArtifactCache
from harness.worker import WorkerSpec, measure
from profiles.catalog import VARIANTS
from profiles.zoo import LoadedModel


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> WorkerSpec:
    torch.manual_seed(0)
    model = LoadedModel(torch.nn.Linear(4, 2).eval(), (torch.ones(1, 4),))
    root = tmp_path_factory.mktemp("worker")
    artifact = build_artifact(model, "tiny", VARIANTS["onnx-fp32"], ConversionContext(), ArtifactCache(root))
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


def _measured(spec: WorkerSpec, do_parity: bool = False) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    measure(spec, do_parity, messages.append)
    assert [m["kind"] for m in messages] == ["measured"]
    return messages[0]


def test_thermal_state_at_the_start_and_end_of_sampling(spec: WorkerSpec) -> None:
    measured = _measured(spec)
    state = measured["thermal_state"]
    assert set(state) == {"source", "start", "end"} and isinstance(state["source"], str)
    assert measured["thermal"] is None or isinstance(measured["thermal"], str)  # the parent dedups warning strings
