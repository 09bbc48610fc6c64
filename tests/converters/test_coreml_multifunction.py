"""The Core ML multifunction package of a base and its LoRA adapters, built on Linux and read from disk."""

from __future__ import annotations

import copy
from pathlib import Path

import peft
import pytest
import torch

from converters.coreml.multifunction import (
    MultifunctionPackage,
    build_multifunction,
    function_names,
    function_spec,
    package_bytes,
)
from profiles.catalog import VARIANTS
from profiles.errors import ConfigError, ModelError
from profiles.zoo import LoadedModel
from tests.lora_kit import ADAPTERS, adapters_of, base_model, lora


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> MultifunctionPackage:
    base = base_model()
    out = tmp_path_factory.mktemp("multifunction")
    return build_multifunction(base, adapters_of(base), VARIANTS["coreml-fp16"], out)


def test_the_package_is_smaller_than_the_separate_ones_by_most_of_the_base_per_extra_adapter(
    built: MultifunctionPackage,
) -> None:
    """Acceptance: the one package is smaller than the sum of the separate packages by at least 80% of the
    base's size per extra adapter. Read from the files on disk; the separate packages counted are the N
    adapted models (the N full models an app would ship otherwise), so the first adapter is the one that is
    not extra: sum - multifunction >= 0.8 * base * (N - 1)."""
    base = package_bytes(built.base.path)
    separate = [package_bytes(a.path) for a in built.adapters]
    joined = package_bytes(built.path)
    print(f"base {base} B, separate {separate} B, multifunction {joined} B")
    assert built.size_bytes == joined and built.base.size_bytes == base and built.full_models_bytes == sum(separate)
    assert joined < sum(separate) - 0.8 * base * (len(separate) - 1)
    # each unfused adapter adds its low-rank matrices alone: a small fraction of the base's size
    assert max(separate) - base < 0.2 * base and joined - base < 0.2 * base * len(separate)


def test_the_package_declares_every_function_and_the_base_as_default(built: MultifunctionPackage) -> None:
    import coremltools as ct

    spec = ct.models.MLModel(str(built.path), skip_model_load=True).get_spec()
    assert function_names(spec) == ["base", *ADAPTERS] == list(built.functions)
    assert spec.description.defaultFunctionName == "base" == built.default_function
    assert spec.specificationVersion >= 9 and built.deployment_target == "iOS18"  # multifunction: iOS18 / macOS 15


def test_each_function_has_its_own_view_of_inputs_and_outputs(built: MultifunctionPackage) -> None:
    """A multifunction spec keeps inputs per function only; the view puts them where readers look."""
    import coremltools as ct

    spec = ct.models.MLModel(str(built.path), skip_model_load=True).get_spec()
    assert list(spec.description.input) == []
    for name in built.functions:
        view = function_spec(spec, name)
        assert [i.name for i in view.description.input] == ["x"]
        assert len(view.description.output) == 1 and not view.description.functions
    assert function_spec(spec, None).description.input[0].name == "x"
    with pytest.raises(ConfigError, match=r"^the model has no function 'missing'; it has base, python_source"):
        function_spec(spec, "missing")


def test_a_merged_adapter_is_refused_before_any_conversion(tmp_path: Path) -> None:
    """Merged weights differ from the base's, so nothing would be shared: refused in one line."""
    base = base_model()
    merged = lora(base.module, 1)
    merged.merge_adapter()
    fused = lora(base.module, 2).merge_and_unload()
    with pytest.raises(ModelError, match=r"^adapter 'a' has merged LoRA layers"):
        build_multifunction(base, {"a": merged}, VARIANTS["coreml-fp16"], tmp_path / "merged")
    with pytest.raises(ModelError, match=r"^adapter 'b' has no peft LoRA layer"):
        build_multifunction(base, {"b": fused}, VARIANTS["coreml-fp16"], tmp_path / "fused")
    with pytest.raises(ModelError, match="is the base's function name"):
        build_multifunction(base, {"base": lambda: merged}, VARIANTS["coreml-fp16"], tmp_path / "named")
    with pytest.raises(ConfigError, match=r"^variant onnx-fp32 is onnx"):
        build_multifunction(base, {"c": lambda: merged}, VARIANTS["onnx-fp32"], tmp_path / "onnx")
    assert not list(tmp_path.rglob("*.mlpackage"))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["coreml-w8", "coreml-w4", "coreml-pal4"])
def test_a_compressed_base_is_shared_too(variant: str, tmp_path: Path) -> None:
    """Weight compression is deterministic, so the compressed base weights are identical in every function
    and stored once (the CI test holds this for fp16)."""
    base = base_model()
    built = build_multifunction(base, adapters_of(base), VARIANTS[variant], tmp_path)
    separate = [a.size_bytes for a in built.adapters]
    assert built.size_bytes < sum(separate) - 0.8 * built.base.size_bytes * (len(separate) - 1)


@pytest.mark.slow
def test_a_decoder_keeps_its_kv_cache_state_in_every_function(tmp_path: Path) -> None:
    """A decoder converts through the stateful path: each function declares the cache as its own state."""
    import coremltools as ct

    from profiles.zoo.decoder import TinyDecoder

    torch.manual_seed(0)
    decoder = TinyDecoder().eval()
    empty, _ = decoder.empty_cache()
    past = torch.zeros((*empty.shape[:3], 2, empty.shape[4]))
    base = LoadedModel(decoder, (torch.tensor([list(b"def main")]), past, past.clone()))
    config = peft.LoraConfig(r=8, target_modules=["qkv", "mlp_in"], init_lora_weights=False)
    adapters = {name: peft.get_peft_model(copy.deepcopy(decoder), config) for name in ADAPTERS}
    built = build_multifunction(base, adapters, VARIANTS["coreml-fp16"], tmp_path)
    spec = ct.models.MLModel(str(built.path), skip_model_load=True).get_spec()
    for function in spec.description.functions:
        assert [s.name for s in function.state] == ["key_cache", "value_cache"], function.name
    separate = [a.size_bytes for a in built.adapters]
    assert built.size_bytes < sum(separate) - 0.8 * built.base.size_bytes * (len(separate) - 1)
