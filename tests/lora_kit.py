"""A tiny base model and peft LoRA adapters of it, for the tests of the Core ML multifunction package
(converters and backend): small enough that each function converts in about a second."""

from __future__ import annotations

import copy

import peft
import torch
from torch import nn

from profiles.zoo import LoadedModel

ADAPTERS = ("python_source", "unicode_names")


class TinyMLP(nn.Module):
    """Big enough that its weights dwarf a package's metadata."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 256)
        self.fc2 = nn.Linear(256, 256)
        self.head = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def base_model() -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(TinyMLP().eval(), (torch.randn(1, 64),))


def lora(base: nn.Module, seed: int) -> peft.PeftModel:
    """An unfused LoRA adapter whose B is random (`init_lora_weights=False`), so adapters differ from the base
    and from each other, as trained ones would."""
    torch.manual_seed(seed)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["fc1", "fc2"], init_lora_weights=False)
    return peft.get_peft_model(copy.deepcopy(base), config).eval()


def adapters_of(base: LoadedModel) -> dict[str, peft.PeftModel]:
    return {name: lora(base.module, seed) for seed, name in enumerate(ADAPTERS, start=1)}
