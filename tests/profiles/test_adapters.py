"""Zoo adapters: trained with peft for real, each better than its base on its own held-out domain."""

from __future__ import annotations

from pathlib import Path

import pytest

from profiles.errors import ModelError
from profiles.zoo import load_model, resolve_model
from profiles.zoo.adapters import lora_layout, task_metric


@pytest.mark.parametrize("ref", ["tiny_decoder+python_source", "tiny_decoder+unicode_names", "digits_cnn+rotated"])
def test_each_zoo_adapter_beats_its_base_on_its_held_out_domain(ref: str) -> None:
    spec = resolve_model(ref)
    loaded = load_model(spec)
    task = task_metric(spec, loaded, decoder=spec.task == "generation")
    assert task is not None and task.beats_base, task
    if task.metric == "perplexity":  # a clear margin, not a rounding: the adapter learnt its domain
        assert task.adapter < 0.9 * task.base
    layout = lora_layout(loaded.peft)
    assert layout.parameters > 0 and layout.targets


def test_the_fused_and_unfused_models_compute_the_same() -> None:
    import torch

    loaded = load_model(resolve_model("tiny_decoder+python_source"))
    assert loaded.unfused is not None and loaded.unfused is not loaded.module
    assert not any("lora" in name for name, _ in loaded.module.named_parameters())
    with torch.inference_mode():
        fused = loaded.module(*loaded.example_inputs)[0]
        unfused = loaded.unfused(*loaded.example_inputs)[0]
    assert torch.allclose(fused, unfused, atol=1e-4)


def test_an_adapter_reference_that_is_neither_zoo_nor_a_peft_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"adapter 'nope' is not a zoo adapter of tiny_decoder .* is not a directory"):
        resolve_model("tiny_decoder+nope")
    with pytest.raises(ModelError, match=r"has no adapter_config.json"):
        resolve_model(f"tiny_decoder+{tmp_path}")
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "PREFIX_TUNING"}')
    with pytest.raises(ModelError, match=r"PREFIX_TUNING adapter; only LoRA"):
        resolve_model(f"tiny_decoder+{tmp_path}")
    with pytest.raises(ModelError, match=r"unknown model 'nope'"):
        resolve_model("nope+python_source")
