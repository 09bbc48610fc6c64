"""`torch-fp32`: the eager model's state dict, so the reference is measured from a file like any variant."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from converters.base import ConversionContext, Converted, Converter
from profiles.catalog import Variant
from profiles.paths import save_torch
from profiles.zoo import LoadedModel


class TorchStateDict(Converter):
    format = "torch"

    def convert(self, model: LoadedModel, variant: Variant, out_dir: Path, ctx: ConversionContext) -> Converted:
        save_torch(model.module.state_dict(), out_dir / "model.pt")
        return Converted("model.pt", "state_dict")

    def inspect(self, main_file: Path) -> tuple[dict[str, int], dict[str, int]]:
        import torch

        state = torch.load(main_file, weights_only=True, map_location="cpu")
        weights: Counter[str] = Counter()
        for tensor in state.values():
            weights[str(tensor.dtype).removeprefix("torch.")] += tensor.numel() * tensor.element_size()
        return {}, dict(weights)
