"""Core ML multifunction packages on a Mac: one function loaded at a time, and the switch from one to another."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.coreml.multifunction import MultifunctionPackage, build_multifunction
from harness.backends.base import DeviceUnavailable, LoadRequest
from harness.backends.coreml import CoreMLBackend
from harness.host import macos_version
from harness.measure.switch import measure_switch
from profiles.catalog import VARIANTS
from profiles.errors import ConfigError
from tests.lora_kit import ADAPTERS, adapters_of, base_model

requires_macos_15 = pytest.mark.skipif(
    sys.platform != "darwin" or macos_version() < (15,),
    reason="requires macOS 15 (Core ML multifunction models, iOS18)",
)
requires_compute_plan = pytest.mark.skipif(
    sys.platform != "darwin" or platform.machine() != "arm64" or macos_version() < (15,),
    reason="requires macOS 15 on Apple silicon (multifunction models, MLComputePlan)",
)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> MultifunctionPackage:
    """fp32, so each function's outputs are held to its torch module tightly."""
    base = base_model()
    return build_multifunction(base, adapters_of(base), VARIANTS["coreml-fp32"], tmp_path_factory.mktemp("mf"))


def _inputs() -> list[np.ndarray]:
    return [base_model().example_inputs[0].numpy()]


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs here")
def test_the_switch_is_refused_with_the_reason_off_macos(tmp_path: Path) -> None:
    request = LoadRequest(str(tmp_path / "model.mlpackage"), "cpu", 1, "unused")
    with pytest.raises(DeviceUnavailable, match=r"^Core ML runs only on macOS$"):
        measure_switch(request, "base", ADAPTERS[0], _inputs())


@requires_macos_15
def test_each_function_computes_its_own_adapter(package: MultifunctionPackage) -> None:
    import coremltools as ct

    base = base_model()
    modules = {"base": base.module, **adapters_of(base)}
    x = base.example_inputs[0]
    request = LoadRequest(str(package.path), "cpu", 1, "unused")
    backend = CoreMLBackend()
    backend.prepare(request)
    outputs = {}
    for name, module in modules.items():
        session = backend.load(request, name)
        outputs[name] = session.run(_inputs())[0]
        expected = module(x).detach().numpy()
        assert np.allclose(outputs[name], expected, atol=1e-4), name
        # the documented API (`MLModel(path, function_name=...)`) loads the same function
        documented = ct.models.MLModel(str(package.path), compute_units=ct.ComputeUnit.CPU_ONLY, function_name=name)
        (value,) = documented.predict({"x": x.numpy()}).values()
        assert np.allclose(value, outputs[name], atol=1e-5), name
    assert not np.allclose(outputs["base"], outputs[ADAPTERS[0]], atol=1e-3)  # the adapters are not the base
    assert np.allclose(backend.load(request).run(_inputs())[0], outputs["base"])  # the default is the base
    with pytest.raises(ConfigError, match="no function 'missing'"):
        backend.load(request, "missing")
    backend.close()


@requires_macos_15
def test_the_switch_from_one_function_to_another_is_timed_cold_and_warm(package: MultifunctionPackage) -> None:
    request = LoadRequest(str(package.path), "cpu", 1, "unused")
    switch = measure_switch(request, ADAPTERS[0], ADAPTERS[1], _inputs(), repeats=3)
    assert (switch.first, switch.second, switch.device) == (*ADAPTERS, "cpu")
    assert switch.compile_ms > 0 and switch.first_load_ms > 0 and switch.cold_first_inference_ms > 0
    assert switch.cold_ms > 0 and len(switch.warm_ms) == 3 and min(switch.warm_ms) > 0
    assert min(switch.warm_ms) <= switch.warm_median_ms <= max(switch.warm_ms)


@requires_compute_plan
def test_each_function_gets_its_own_compute_plan(package: MultifunctionPackage) -> None:
    request = LoadRequest(str(package.path), "cpu", 1, "unused")
    backend = CoreMLBackend()
    backend.prepare(request)
    for name in package.functions:
        session = backend.load(request, name)
        backend.admit(session, request)
        assert session.placement()["source"] == "MLComputePlan" and session.placement()["by_device"]
    assert set(backend.plans) == set(package.functions)
    backend.close()
