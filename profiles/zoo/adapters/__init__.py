"""Adapters: a base model plus a LoRA adapter, referred to as ``BASE+ADAPTER``.

The protocol for a user's adapter: ``BASE`` is any model reference (a zoo name, ``package.module:factory``
or ``path/to/file.py:factory``) and ``ADAPTER`` a zoo adapter of that base (`ZOO_ADAPTERS`) or a directory
that peft wrote for a model the base factory builds (``PeftModel.save_pretrained``: ``adapter_config.json``
beside the adapter's state dict, ``adapter_model.safetensors`` or ``adapter_model.bin``; a bare state dict
is saved that way with its ``LoraConfig``). The harness calls the base factory, loads the adapter with
``PeftModel.from_pretrained`` and measures two models made from it:

- the fused model (``merge_and_unload``): the base's architecture with the adapter merged into its
  weights. It is ``LoadedModel.module``, the torch reference of parity, and every existing recipe
  (onnx-fp32, onnx-int8-dynamic, et-xnnpack-fp32, coreml-w8, ...) converts it: fused and quantized like any
  model;
- the unfused model (``LoadedModel.unfused``): the base with the low-rank branch kept beside each adapted
  weight, ``W x + B A x``, which the ``*-lora-unfused`` recipes convert (`profiles.catalog`).

Only LoRA (peft's ``LoraConfig``) is taken: it is what the runtimes' adapter formats hold. An adapter whose
config is another peft method is refused in one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from profiles.catalog import ADAPTER_SEPARATOR
from profiles.errors import ModelError, first_line

SEPARATOR = ADAPTER_SEPARATOR


@dataclass(frozen=True)
class ZooAdapter:
    name: str
    base: str
    trainer: str  # `profiles.zoo.adapters.training.TRAINERS`
    domain: str  # its data (`profiles.zoo.adapters.domains`)
    description: str


ZOO_ADAPTERS: dict[tuple[str, str], ZooAdapter] = {
    (a.base, a.name): a
    for a in [
        ZooAdapter(
            "python_source", "tiny_decoder", "decoder", "python_source", "LoRA r8 on the standard library's source"
        ),
        ZooAdapter("unicode_names", "tiny_decoder", "decoder", "unicode_names", "LoRA r8 on Unicode character names"),
        ZooAdapter("rotated", "digits_cnn", "rotated_digits", "rotated", "LoRA r4 on digits turned a quarter turn"),
    ]
}


@dataclass(frozen=True)
class AdapterRef:
    """A ``BASE+ADAPTER`` reference taken apart: the zoo adapter, or the user's peft directory."""

    ref: str
    base: str
    adapter: str
    zoo: ZooAdapter | None

    @property
    def directory(self) -> Path | None:
        return None if self.zoo is not None else Path(self.adapter).resolve()


def is_adapter_ref(ref: str) -> bool:
    return SEPARATOR in ref


def parse_adapter_ref(ref: str) -> AdapterRef:
    """Split at the last ``+`` and check the adapter's half without importing anything: a zoo adapter of
    that base, or a directory holding ``adapter_config.json``; `ModelError` in one line."""
    base, _, adapter = ref.rpartition(SEPARATOR)
    if not base or not adapter:
        raise ModelError(f"model '{ref}': expected BASE+ADAPTER (a zoo adapter or a peft adapter directory)")
    zoo = ZOO_ADAPTERS.get((base, adapter))
    if zoo is not None:
        return AdapterRef(ref, base, adapter, zoo)
    path = Path(adapter).resolve()
    if not (path / "adapter_config.json").is_file():
        known = ", ".join(f"{b}+{a}" for b, a in ZOO_ADAPTERS) or "none"
        where = "has no adapter_config.json" if path.is_dir() else "is not a directory"
        raise ModelError(
            f"model '{ref}': adapter '{adapter}' is not a zoo adapter of {base} ({known}) and {path} {where}: "
            "give a directory written by peft's save_pretrained"
        )
    config = _read_config(ref, path)
    if config.get("peft_type") != "LORA":
        raise ModelError(f"model '{ref}': {path} is a {config.get('peft_type')} adapter; only LoRA is measured")
    return AdapterRef(ref, base, adapter, None)


def _read_config(ref: str, path: Path) -> dict[str, Any]:
    try:
        config = json.loads((path / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"model '{ref}': cannot read {path / 'adapter_config.json'}: {first_line(exc)}") from exc
    if not isinstance(config, dict):
        raise ModelError(f"model '{ref}': {path / 'adapter_config.json'} is not a JSON object")
    return config


def adapter_directory(parsed: AdapterRef, base_module: Any) -> Path:
    """Where the adapter's peft directory is: the user's, or the zoo's (trained on first use)."""
    if parsed.zoo is None:
        assert parsed.directory is not None
        return parsed.directory
    from profiles.zoo.adapters.training import trained_adapter

    return trained_adapter(parsed.base, base_module, parsed.zoo.name, parsed.zoo.trainer, parsed.zoo.domain)


def attach(parsed: AdapterRef, base_module: Any) -> tuple[Any, Any]:
    """(fused module, peft model) from the base module: the peft model holds the base with the LoRA
    layers injected (`PeftModel.base_model.model` is the unfused module) and runs the base alone under
    `disable_adapter()`; the fused module is a merged copy. A directory that does not fit the base (other
    module names, other shapes) is a `ModelError` naming both."""
    import copy

    from peft import PeftModel

    directory = adapter_directory(parsed, base_module)
    try:
        peft_model = PeftModel.from_pretrained(base_module, str(directory)).eval()
    except Exception as exc:  # peft and torch raise many types for an adapter that does not fit
        raise ModelError(
            f"model '{parsed.ref}': the adapter in {directory} does not load onto {parsed.base}: {first_line(exc)}"
        ) from exc
    fused = copy.deepcopy(peft_model).merge_and_unload().eval()
    return fused, peft_model


@dataclass(frozen=True)
class LoraLayout:
    """What the adapter adds: its rank(s), the modules it adapts, its parameters and their bytes (fp32)."""

    ranks: tuple[int, ...]
    targets: tuple[str, ...]  # adapted modules of the base, by dotted name
    parameters: int
    bytes_fp32: int


def lora_layout(peft_model: Any) -> LoraLayout:
    ranks, targets, parameters = set(), [], 0
    for name, module in peft_model.base_model.model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            targets.append(name)
            ranks.add(int(module.r["default"]))
            parameters += sum(p.numel() for p in module.lora_A["default"].parameters())
            parameters += sum(p.numel() for p in module.lora_B["default"].parameters())
    return LoraLayout(tuple(sorted(ranks)), tuple(targets), parameters, parameters * 4)


def domain_arrays(parsed: AdapterRef, count: int, purpose: str) -> tuple[tuple[Any, ...], Any] | None:
    """(inputs, labels) of a zoo adapter's own domain, for parity ("parity": held-out rows) and calibration
    (training rows); None for a user adapter, which is judged on its base's dataset."""
    if parsed.zoo is None:
        return None
    from profiles.zoo.adapters.domains import TEXT_DOMAINS, rotate

    if parsed.zoo.domain in TEXT_DOMAINS:
        from profiles.zoo.decoder import MAX_CONTEXT, windows

        data = TEXT_DOMAINS[parsed.zoo.domain]()
        text = data.train if purpose == "calibration" else data.held_out
        return (windows(text, count, MAX_CONTEXT, seed=0 if purpose == "parity" else 1),), None
    from profiles.zoo.digits import digits_split

    split = digits_split()
    if purpose == "calibration":
        return (rotate(split.x_train[:count]),), split.y_train[:count]
    return (rotate(split.x_test[:count]),), split.y_test[:count]


@dataclass(frozen=True)
class AdapterTask:
    """The adapter's task metric on its domain's held-out rows beside the base's on the same rows."""

    metric: Literal["perplexity", "accuracy"]  # perplexity per token (decoders), accuracy (labelled classifiers)
    adapter: float
    base: float
    lower_is_better: bool
    rows: int
    data: str

    @property
    def beats_base(self) -> bool:
        return self.adapter < self.base if self.lower_is_better else self.adapter > self.base


TASK_ROWS = 64
TASK_TOKENS = 256


def task_metric(spec: Any, loaded: Any, decoder: bool) -> AdapterTask | None:
    """Held-out perplexity (a decoder) or accuracy (a classifier with labels) of the adapter (the fused
    module, the parity reference) and of the base alone (peft's `disable_adapter`) on the same rows of
    the model's dataset: its domain for a zoo adapter, its base's for a user's. None without a dataset,
    or a dataset without labels for a model that is not a decoder."""
    import torch
    import torch.nn.functional as F

    if spec.dataset is None:
        return None
    data = spec.dataset(TASK_ROWS, "parity")
    inputs = [torch.from_numpy(x) for x in data.inputs]
    unfused = loaded.peft.base_model.model

    def scores(module: Any) -> float:
        with torch.inference_mode():
            if decoder:
                rows = inputs[0][:, : TASK_TOKENS + 1]
                shape = loaded.example_inputs[1].shape
                empty = torch.zeros((len(rows), shape[1], shape[2], 0, shape[4]))
                logits, _, _ = module(rows[:, :-1], empty, empty.clone())
                nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1))
                return float(torch.exp(nll))
            predicted = module(*inputs).argmax(-1).numpy()
            return float((predicted == data.labels).mean())

    if not decoder and data.labels is None:
        return None
    adapter = scores(loaded.module)
    with loaded.peft.disable_adapter():
        base = scores(unfused)
    source = f"{spec.name}: {len(inputs[0])} held-out rows" + (f" of {TASK_TOKENS} tokens" if decoder else "")
    return AdapterTask("perplexity" if decoder else "accuracy", adapter, base, decoder, len(inputs[0]), source)
