"""A user decoder in the shape of today's small LLMs, written to the decoder protocol outside the package and
held out from it (no project code builds it): RMSNorm (`nn.RMSNorm` with its default eps None), rotary
positions, grouped-query attention (4 query heads sharing 2 KV heads) and a SwiGLU MLP, seeded random
weights, a 96-token vocabulary.

    bench run genai -m tests/harness/generation/modern_decoder.py:build
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MASKED = -1e4


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + turned * sin


class Block(nn.Module):
    def __init__(self, width: int, heads: int, kv_heads: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, width // heads
        self.attention_norm = nn.RMSNorm(width)
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(width, kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(width, width, bias=False)
        self.mlp_norm = nn.RMSNorm(width)
        self.gate = nn.Linear(width, 2 * width, bias=False)
        self.up = nn.Linear(width, 2 * width, bias=False)
        self.down = nn.Linear(2 * width, width, bias=False)

    def forward(self, x, cos, sin, mask, past_k, past_v):
        batch, new, width = x.shape
        h = self.attention_norm(x)
        q = self.q(h).view(batch, new, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(batch, new, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(batch, new, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        group = self.heads // self.kv_heads
        scores = q @ k.repeat_interleave(group, dim=1).transpose(-1, -2) / self.head_dim**0.5 + mask
        context = (scores.softmax(-1) @ v.repeat_interleave(group, dim=1)).transpose(1, 2).reshape(batch, new, width)
        x = x + self.o(context)
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h)), k, v


class ModernDecoder(nn.Module):
    def __init__(self, vocab: int = 96, width: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2) -> None:
        super().__init__()
        self.vocab_size = vocab
        self.max_context = 640
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList([Block(width, heads, kv_heads) for _ in range(layers)])
        self.norm = nn.RMSNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        head_dim = width // heads
        self.register_buffer("inv_freq", 1e4 ** (-torch.arange(0, head_dim, 2).float() / head_dim), persistent=False)

    def forward(self, tokens, past_keys, past_values):
        past, new = past_keys.shape[3], tokens.shape[1]
        positions = (torch.arange(new) + past).float()
        angles = positions[:, None] * self.inv_freq[None, :]
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
        visible = torch.arange(past + new)[None, :] <= (torch.arange(new) + past)[:, None]
        mask = torch.where(visible, 0.0, MASKED)
        x = self.embed(tokens)
        keys, values = [], []
        for index, block in enumerate(self.blocks):
            x, k, v = block(x, cos, sin, mask, past_keys[:, index], past_values[:, index])
            keys.append(k)
            values.append(v)
        return self.head(self.norm(x)), torch.stack(keys, dim=1), torch.stack(values, dim=1)


def build():
    torch.manual_seed(0)
    model = ModernDecoder().eval()
    past = torch.zeros(1, 2, 2, 2, 16)
    return model, (torch.tensor([[1, 2, 3]]), past, past.clone())
