"""`tiny_decoder`: a GPT-style byte-level decoder with a KV cache, trained on first use on Python's own
documentation, then cached.

Text: `pydoc_data.topics` from the standard library (the language reference's help topics, about 0.46 MB of
English prose with code, present in every CPython install). Paragraphs are split, never windows of one text:
every 10th paragraph (topics sorted by name) is held out, so held-out windows share no sentence with training.

Architecture (each choice is for a model that trains in seconds and converts everywhere):
- bytes as tokens (vocabulary 256): no tokenizer to ship, every string encodes;
- pre-LayerNorm blocks, 4 layers, width 128, 4 heads, GELU MLP of 4x width, untied output head (a plain
  MatMul weight, which 4-bit MatMul quantization can take);
- ALiBi (Press et al., "Train Short, Test Long") instead of position embeddings: trained on 64-token
  windows, it still reads 512-token prompts, and a cache needs no position input;
- the KV cache is functional: `forward(tokens, past_keys, past_values) -> (logits, keys, values)`, cache
  tensors (batch, layers, heads, positions, head_dim) with the new positions appended. One signature serves
  prefill (no past: 0 positions) and decode (one token), and exports as one graph.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from profiles.paths import cache_root
from profiles.zoo.weights import load_cached, save_cached

log = logging.getLogger(__name__)

VOCAB = 256
WIDTH = 128
LAYERS = 4
HEADS = 4
MAX_CONTEXT = 1024
MASKED = -1e4  # representable in fp16, and exp() of it is 0 in fp32
TRAIN_WINDOW = 64
TRAIN_BATCH = 16
TRAIN_STEPS = 80
LEARNING_RATE = 6e-3
HELD_OUT_EVERY = 10


def alibi_slopes(heads: int) -> torch.Tensor:
    """The geometric slopes of ALiBi for a power-of-two head count: 2^(-8/heads), 2^(-16/heads), ..."""
    return torch.tensor([2.0 ** (-8.0 * (i + 1) / heads) for i in range(heads)])


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attention_output = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp_in = nn.Linear(width, 4 * width)
        self.mlp_out = nn.Linear(4 * width, width)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, tokens, width = x.shape
        head_dim = width // self.heads
        qkv = self.qkv(self.attention_norm(x)).view(batch, tokens, 3, self.heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, tokens, head_dim)
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_dim) + bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(batch, tokens, width)
        x = x + self.attention_output(context)
        return x + self.mlp_out(F.gelu(self.mlp_in(self.mlp_norm(x)))), k, v


class TinyDecoder(nn.Module):
    """The decoder protocol (see `profiles.zoo` docs): `vocab_size`, `max_context`, and
    `forward(tokens, past_keys, past_values) -> (logits, keys, values)`."""

    def __init__(self, vocab: int = VOCAB, width: int = WIDTH, layers: int = LAYERS, heads: int = HEADS) -> None:
        super().__init__()
        self.vocab_size = vocab
        self.max_context = MAX_CONTEXT
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.final_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.register_buffer("slopes", alibi_slopes(heads)[:, None, None], persistent=False)

    def empty_cache(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        block = self.blocks[0]
        shape = (batch, len(self.blocks), block.heads, 0, self.embed.embedding_dim // block.heads)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(
        self, tokens: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        past, new = past_keys.shape[3], tokens.shape[1]
        query_pos = torch.arange(new, device=tokens.device) + past
        key_pos = torch.arange(past + new, device=tokens.device)
        distance = (query_pos[:, None] - key_pos[None, :]).to(torch.float32)
        bias = torch.where(distance < 0, torch.full_like(distance, MASKED), -self.slopes * distance)
        x = self.embed(tokens)
        keys, values = [], []
        for index, block in enumerate(self.blocks):
            x, k, v = block(x, bias, past_keys[:, index], past_values[:, index])
            keys.append(k)
            values.append(v)
        logits = self.head(self.final_norm(x))
        return logits, torch.stack(keys, dim=1), torch.stack(values, dim=1)


@dataclass(frozen=True)
class Corpus:
    train: np.ndarray  # uint8 bytes of the training topics, joined
    held_out: np.ndarray  # bytes of the held-out topics, joined
    source: str


@lru_cache(maxsize=1)
def corpus() -> Corpus:
    """Python's documentation topics as bytes, split by topic (every 10th held out)."""
    from pydoc_data.topics import topics

    paragraphs = [p.strip() for name in sorted(topics) for p in topics[name].split("\n\n") if p.strip()]
    train = [p for i, p in enumerate(paragraphs) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    held = [p for i, p in enumerate(paragraphs) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]

    def encode(parts: list[str]) -> np.ndarray:
        return np.frombuffer("\n\n".join(parts).encode("utf-8"), dtype=np.uint8).copy()

    source = f"pydoc_data.topics ({len(topics)} topics, every 10th paragraph held out)"
    return Corpus(encode(train), encode(held), source)


def windows(text: np.ndarray, count: int, length: int, seed: int) -> np.ndarray:
    """`count` windows of `length` tokens (int64, count x length), evenly spaced, shifted by a seeded offset."""
    span = len(text) - length
    if span <= 0 or count < 1:
        raise ValueError(f"a text of {len(text)} tokens holds no window of {length}")
    offset = int(np.random.default_rng(seed).integers(0, max(1, span // count)))
    starts = (offset + np.arange(count) * (span // count)) % span if count > 1 else np.array([offset])
    return np.stack([text[s : s + length] for s in starts]).astype(np.int64)


def _weights_key() -> str:
    recipe = inspect.getsource(TinyDecoder) + inspect.getsource(Block) + inspect.getsource(_train)
    settings = f"{VOCAB}:{WIDTH}:{LAYERS}:{HEADS}:{TRAIN_WINDOW}:{TRAIN_BATCH}:{TRAIN_STEPS}:{LEARNING_RATE}"
    digest = hashlib.sha256((recipe + settings).encode())
    digest.update(corpus().train.tobytes())
    return digest.hexdigest()[:16]


def _train() -> TinyDecoder:
    text = torch.from_numpy(corpus().train.astype(np.int64))
    torch.manual_seed(0)
    model = TinyDecoder()
    optimiser = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, total_steps=TRAIN_STEPS, pct_start=0.1)
    batches = torch.Generator().manual_seed(0)
    past_k, past_v = model.empty_cache(TRAIN_BATCH)
    model.train()
    for _ in range(TRAIN_STEPS):
        starts = torch.randint(0, len(text) - TRAIN_WINDOW - 1, (TRAIN_BATCH,), generator=batches)
        rows = torch.stack([text[s : s + TRAIN_WINDOW + 1] for s in starts.tolist()])
        logits, _, _ = model(rows[:, :-1], past_k, past_v)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), rows[:, 1:].reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return model.eval()


def trained_decoder() -> TinyDecoder:
    """The trained decoder; trains (well under a minute on 2 cores) and caches the weights on first use."""
    path = cache_root() / "weights" / f"tiny_decoder-{_weights_key()}.pt"
    model = TinyDecoder()
    if load_cached(path, model):
        return model.eval()
    log.info("training tiny_decoder on %s (cached at %s)", corpus().source, path)
    with torch.random.fork_rng():
        model = _train()
    save_cached(path, model)
    return model


def tiny_decoder() -> tuple[TinyDecoder, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The zoo factory: the trained decoder, a prompt and a two-position cache (P = 2: see the decoder
    protocol in `profiles.zoo`)."""
    model = trained_decoder()
    tokens = torch.tensor([list(b"The quick brown fox")], dtype=torch.int64)
    empty, _ = model.empty_cache()
    past = torch.zeros((*empty.shape[:3], 2, empty.shape[4]))
    return model, (tokens, past, past.clone())


@dataclass(frozen=True)
class TaskMetrics:
    accuracy: float  # held-out next-token accuracy of the model
    perplexity: float  # held-out, per byte
    unigram_accuracy: float  # always predicting the training split's most frequent byte
    unigram_perplexity: float  # the training split's byte frequencies as the prediction
    tokens: int


def task_metrics(model: nn.Module, count: int = 32, length: int = 256) -> TaskMetrics:
    """Next-token accuracy and perplexity on held-out windows, beside a unigram baseline from training."""
    data = corpus()
    rows = torch.from_numpy(windows(data.held_out, count, length, seed=1))
    past_k, past_v = model.empty_cache(count)
    with torch.inference_mode():
        logits, _, _ = model(rows[:, :-1], past_k, past_v)
    targets = rows[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    accuracy = float((logits.argmax(-1) == targets).float().mean())
    counts = np.bincount(data.train, minlength=VOCAB).astype(np.float64) + 1.0
    probabilities = counts / counts.sum()
    flat = targets.reshape(-1).numpy()
    return TaskMetrics(
        accuracy=accuracy,
        perplexity=float(torch.exp(nll)),
        unigram_accuracy=float(np.mean(flat == int(np.argmax(counts)))),
        unigram_perplexity=float(np.exp(-np.mean(np.log(probabilities[flat])))),
        tokens=int(flat.size),
    )
