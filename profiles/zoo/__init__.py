"""The model zoo and the user-model protocol.

A model is a factory returning ``(module, example_inputs)``: an ``nn.Module`` and one tensor or a
tuple of tensors with batch size 1 (dim 0 of every input is 1; any other batch, 0 included, is refused:
parity and calibration feed the graph rows of one, and every format is built for the example's shape).
Zoo models are named here; a user model is referred to as
``package.module:factory`` (importable from the current directory or ``sys.path``) or
``path/to/file.py:factory``.

A decoder (a generative model with a KV cache) follows the same protocol, with three more rules, so the
harness measures it token by token (time to first token, decode ms/token, tokens/s, memory per 1k tokens
of context) and judges it token by token (greedy continuations, perplexity):
- the module has integer attributes ``vocab_size`` and ``max_context`` (the most positions the cache holds);
- ``example_inputs`` are ``(tokens, past_keys, past_values)``: ``tokens`` int64 ``(1, T)``, each cache
  float32 ``(1, layers, heads, P, head_dim)`` with ``T >= 2`` and ``P >= 2`` (exporters specialise sizes 0 and
  1), from which the harness reads layers, heads and head_dim;
- ``forward(tokens, past_keys, past_values)`` returns ``(logits, keys, values)``: logits ``(1, T, vocab)`` for
  every new position, and the caches with the ``T`` new positions appended on axis 3 (``P + T``). ``P = 0``
  (an empty cache) is the prefill. Attention masking and positions are the module's business.
`tiny_decoder` (profiles/zoo/decoder.py) is the zoo's; `examples/` has a user decoder in a file. Under a
profile with a ``[generation]`` table every model must follow these rules (`decoder_protocol` names the
first one broken); elsewhere a model that does not is measured as a plain model.

A model with an adapter is ``BASE+ADAPTER``: the base's factory plus a LoRA adapter, a zoo adapter or the
user's peft directory (the protocol is in `profiles.zoo.adapters`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from profiles.catalog import ADAPTER_SEPARATOR
from profiles.errors import ModelError, ProtocolError
from profiles.zoo.adapters import AdapterRef, attach, domain_arrays, is_adapter_ref, parse_adapter_ref


@dataclass(frozen=True)
class Dataset:
    """Real inputs for parity and calibration: one array per model input (N x ...), labels where known."""

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray | None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    ref: str
    description: str
    task: str  # "classification" | "embedding" | "generation" | "generic"
    factory: Callable[[], Any]
    dataset: Callable[[int, str], Dataset] | None = None  # (count, "parity" | "calibration")
    adapter: AdapterRef | None = None  # a `BASE+ADAPTER` model


@dataclass
class LoadedModel:
    module: Any  # torch.nn.Module in eval mode
    example_inputs: tuple[Any, ...]  # torch tensors, batch 1
    factory: Any = None  # the function that built it (a user factory: the imported function itself)
    peft: Any = None  # a `BASE+ADAPTER` model: the peft model (`module` is its fused copy)

    @property
    def unfused(self) -> Any:
        """The base with the LoRA branch kept in the graph (`profiles.zoo.adapters`), or None."""
        return None if self.peft is None else self.peft.base_model.model

    @property
    def input_names(self) -> list[str]:
        if decoder_info(self) is not None:
            return DECODER_INPUT_NAMES
        return input_names(len(self.example_inputs))


@dataclass(frozen=True)
class DecoderInfo:
    """What the harness reads off a decoder (see the module docstring for the protocol)."""

    vocab_size: int
    max_context: int
    layers: int
    heads: int
    head_dim: int

    def empty_cache(self) -> np.ndarray:
        return np.zeros((1, self.layers, self.heads, 0, self.head_dim), np.float32)


DECODER_INPUT_NAMES = ["tokens", "past_keys", "past_values"]
DECODER_OUTPUT_NAMES = ["logits", "keys", "values"]


def decoder_protocol(loaded: LoadedModel) -> str | None:
    """The first rule of the decoder protocol (module docstring) the model breaks, in words, or None
    when it follows them all. Checks what can be read without running the model; what a forward returns
    is checked as it runs (`harness.generation.measure.checked_step`)."""
    module, inputs = loaded.module, loaded.example_inputs
    for name in ("vocab_size", "max_context"):
        value = getattr(module, name, None)
        if value is None:
            return f"the module has no attribute {name} (an int)"
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return f"the module's {name} is {value!r} ({type(value).__name__}); it must be an int of at least 1"
    if len(inputs) != 3:
        return f"example_inputs are {len(inputs)} tensor(s); a decoder takes (tokens, past_keys, past_values)"
    tokens, past_keys, past_values = inputs
    if tokens.dim() != 2 or tokens.is_floating_point() or tokens.shape[1] < 2:
        return f"tokens are {tokens.dtype} {tuple(tokens.shape)}; they must be integer ids (1, T) with T >= 2"
    for name, cache in (("past_keys", past_keys), ("past_values", past_values)):
        if cache.dim() != 5 or not cache.is_floating_point() or cache.shape[3] < 2:
            return (
                f"{name} is {cache.dtype} {tuple(cache.shape)}; each cache must be float "
                "(1, layers, heads, P, head_dim) with P >= 2"
            )
    if past_keys.shape != past_values.shape:
        return f"past_keys {tuple(past_keys.shape)} and past_values {tuple(past_values.shape)} differ in shape"
    return None


def decoder_info(loaded: LoadedModel) -> DecoderInfo | None:
    """The decoder's shape if the model follows the decoder protocol, else None."""
    if decoder_protocol(loaded) is not None:
        return None
    _, layers, heads, _, head_dim = loaded.example_inputs[1].shape
    return DecoderInfo(loaded.module.vocab_size, loaded.module.max_context, int(layers), int(heads), int(head_dim))


def input_names(count: int) -> list[str]:
    return ["input"] if count == 1 else [f"input_{i}" for i in range(count)]


def _photo_dataset(size: int) -> Callable[[int, str], Dataset]:
    def dataset(count: int, purpose: str) -> Dataset:
        from profiles.zoo.images import photo_batch

        return Dataset((photo_batch(count, size, purpose),), None)

    return dataset


def _digits_dataset(count: int, purpose: str) -> Dataset:
    """Parity on the held-out test split; calibration on training rows, never the rows it is judged on."""
    from profiles.zoo.digits import digits_split

    split = digits_split()
    if purpose == "calibration":
        return Dataset((split.x_train[:count],), split.y_train[:count])
    return Dataset((split.x_test[:count],), split.y_test[:count])


def _decoder_dataset(count: int, purpose: str) -> Dataset:
    """Token windows of real text: held-out paragraphs for parity, training paragraphs for calibration.
    One array (count x 1024 tokens); the harness cuts prompts and perplexity windows from it."""
    from profiles.zoo.decoder import MAX_CONTEXT, corpus, windows

    data = corpus()
    text = data.train if purpose == "calibration" else data.held_out
    return Dataset((windows(text, count, MAX_CONTEXT, seed=0 if purpose == "parity" else 1),), None)


def _smollm2_dataset(count: int, purpose: str) -> Dataset:
    """`_decoder_dataset`'s text and split, in SmolLM2's tokens (count x 1024)."""
    from profiles.zoo.decoder import windows
    from profiles.zoo.smollm2 import MAX_CONTEXT, token_text

    text = token_text("train" if purpose == "calibration" else "held_out")
    return Dataset((windows(text, count, MAX_CONTEXT, seed=0 if purpose == "parity" else 1),), None)


def _minilm_dataset(count: int, purpose: str) -> Dataset:
    from profiles.zoo.minilm import sentence_dataset

    return Dataset(sentence_dataset(count, purpose), None)


def import_factory(ref: str) -> Callable[[], Any]:
    """Import a user factory `package.module:factory` or `path/to/file.py:factory`; `ModelError` in one
    line. Only worker processes call this: a user module runs its import-time code (which may crash,
    hang or print) where that fails only its own cases."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise ModelError(f"model '{ref}': expected package.module:factory or path/to/file.py:factory")
    try:
        if target.endswith(".py"):
            path = Path(target).resolve()
            if not path.is_file():
                raise ModelError(f"model '{ref}': file {path} does not exist")
            module_name = f"_bench_user_{path.stem}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(target)
    except ModelError:
        raise
    except (Exception, SystemExit) as exc:  # a module calling sys.exit at import cannot be imported either
        raise ModelError(f"model '{ref}': cannot import {target}: {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(f"model '{ref}': {target} has no callable named '{attr}'")
    return factory


@dataclass(frozen=True)
class ZooFactory:
    """A zoo factory by name, imported when first called (torch stays out of `bench` itself).

    Each lives in the module of its model, not beside the table below: the cache key hashes the file
    that defines a model's factory (`converters.fingerprint`), and a factory defined here would change
    every zoo model's key whenever any entry of the table does."""

    module: str
    name: str

    def resolve(self) -> Callable[[], Any]:
        return getattr(importlib.import_module(self.module), self.name)

    def __call__(self) -> Any:
        return self.resolve()()


@dataclass(frozen=True)
class UserFactory:
    """A user factory by reference, imported when first called (in a worker, never in `bench` itself)."""

    ref: str

    def resolve(self) -> Callable[[], Any]:
        return import_factory(self.ref)

    def __call__(self) -> Any:
        return self.resolve()()


ZOO: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "digits_cnn",
            "digits_cnn",
            "small CNN trained on scikit-learn digits (8x8, 10 classes)",
            "classification",
            ZooFactory("profiles.zoo.digits", "digits_cnn"),
            _digits_dataset,
        ),
        ModelSpec(
            "mobilenet_v3_small",
            "mobilenet_v3_small",
            "MobileNetV3-Small layout, 224x224, fixed-seed weights",
            "classification",
            ZooFactory("profiles.zoo.nets", "mobilenet_v3_small"),
            _photo_dataset(224),
        ),
        ModelSpec(
            "resnet18",
            "resnet18",
            "ResNet-18 layout, 224x224, fixed-seed weights",
            "classification",
            ZooFactory("profiles.zoo.nets", "resnet18"),
            _photo_dataset(224),
        ),
        ModelSpec(
            "minilm",
            "minilm",
            "all-MiniLM-L6-v2 sentence embeddings, pretrained (extra 'zoo'), 64 tokens, real sentences",
            "embedding",
            ZooFactory("profiles.zoo.minilm", "minilm"),
            _minilm_dataset,
        ),
        ModelSpec(
            "tiny_decoder",
            "tiny_decoder",
            "GPT-style byte decoder with a KV cache, 0.86M parameters, trained on Python's docs (pydoc_data)",
            "generation",
            ZooFactory("profiles.zoo.decoder", "tiny_decoder"),
            _decoder_dataset,
        ),
        ModelSpec(
            "smollm2_135m",
            "smollm2_135m",
            "SmolLM2-135M-Instruct, pretrained (extra 'llm'): Llama architecture, GQA, RoPE, RMSNorm, from its GGUF",
            "generation",
            ZooFactory("profiles.zoo.smollm2", "smollm2_135m"),
            _smollm2_dataset,
        ),
        ModelSpec(
            "vit_small",
            "vit_small",
            "ViT-Tiny-shaped encoder, 64x64, 8x8 patches, 6 blocks",
            "classification",
            ZooFactory("profiles.zoo.nets", "vit_small"),
            _photo_dataset(64),
        ),
    ]
}


@dataclass(frozen=True)
class AdapterFactory:
    """A `BASE+ADAPTER` model's factory: the base's, with the adapter merged (the plain protocol's view;
    `load_model` also keeps the unfused model)."""

    ref: str

    def __call__(self) -> Any:
        loaded = load_model(resolve_model(self.ref))
        return loaded.module, loaded.example_inputs


def _adapter_spec(ref: str) -> ModelSpec:
    base_ref = ref.rpartition(ADAPTER_SEPARATOR)[0]
    if is_adapter_ref(base_ref):
        raise ModelError(f"model '{ref}': one adapter per model (BASE+ADAPTER); {base_ref} has one already")
    base = resolve_model(base_ref) if base_ref else None  # an unknown base is named before its adapter
    parsed = parse_adapter_ref(ref)
    assert base is not None
    dataset = base.dataset
    if parsed.zoo is not None:

        def dataset(count: int, purpose: str) -> Dataset:
            found = domain_arrays(parsed, count, purpose)
            assert found is not None
            return Dataset(*found)

    what = parsed.zoo.description if parsed.zoo else f"the peft adapter in {parsed.directory}"
    return ModelSpec(ref, ref, f"{base.name} with {what}", base.task, AdapterFactory(ref), dataset, parsed)


def resolve_model(ref: str) -> ModelSpec:
    """A zoo name, a user factory reference or `BASE+ADAPTER`, checked for its form (and a file path for
    its existence) without importing anything; raises `ModelError` in one line."""
    if ref in ZOO:
        return ZOO[ref]
    if is_adapter_ref(ref):
        return _adapter_spec(ref)
    target, _, attr = ref.rpartition(":")
    if ":" not in ref or not target or not attr:
        raise ModelError(
            f"unknown model '{ref}': not in the zoo ({', '.join(sorted(ZOO))}) "
            "and not of the form package.module:factory or path/to/file.py:factory"
        )
    if target.endswith(".py") and not Path(target).resolve().is_file():
        raise ModelError(f"model '{ref}': file {Path(target).resolve()} does not exist")
    return ModelSpec(ref, ref, f"user model {ref}", "generic", UserFactory(ref))


def load_model(spec: ModelSpec) -> LoadedModel:
    """Call the factory (importing a user factory first) and check what it returned against the protocol."""
    import torch

    if spec.adapter is not None:
        base = load_model(resolve_model(spec.adapter.base))
        fused, peft = attach(spec.adapter, base.module)
        return LoadedModel(fused, base.example_inputs, base.factory, peft=peft)
    try:
        factory = spec.factory.resolve() if isinstance(spec.factory, (ZooFactory, UserFactory)) else spec.factory
        built = factory()
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"model '{spec.name}': factory raised {type(exc).__name__}: {exc}") from exc
    if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], torch.nn.Module)):
        raise ProtocolError(f"model '{spec.name}': the factory must return (nn.Module, example_inputs)")
    module, inputs = built
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ProtocolError(f"model '{spec.name}': example_inputs must be a tensor or a tuple of tensors")
    names = input_names(len(inputs))
    for name, tensor in zip(names, inputs, strict=True):
        if tensor.dim() == 0 or tensor.shape[0] != 1:
            batch = "no batch dimension (0-d)" if tensor.dim() == 0 else f"batch {tensor.shape[0]}"
            raise ProtocolError(
                f"model '{spec.name}': example input {name} {tuple(tensor.shape)} has {batch}; the harness "
                "measures batch 1 on every format: give example inputs whose dim 0 is 1"
            )
    return LoadedModel(module.eval(), inputs, factory)
