"""A user decoder outside the package, following the decoder protocol (see `profiles/zoo/__init__.py`):

    bench run genai -m examples/user_decoder.py:build

No position encoding (causal attention alone orders the tokens), seeded random weights, a 64-token
vocabulary: the harness measures and judges it on seeded random prompts, since it brings no text.
"""

from __future__ import annotations

import torch
from torch import nn


class ToyDecoder(nn.Module):
    def __init__(self, vocab: int = 64, width: int = 32, layers: int = 2, heads: int = 2) -> None:
        super().__init__()
        self.vocab_size = vocab
        self.max_context = 64
        self.heads = heads
        self.embed = nn.Embedding(vocab, width)
        self.qkv = nn.ModuleList([nn.Linear(width, 3 * width) for _ in range(layers)])
        self.mix = nn.ModuleList([nn.Linear(width, width) for _ in range(layers)])
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor):
        x = self.embed(tokens)
        batch, new, width = x.shape
        past = past_keys.shape[3]
        visible = torch.arange(past + new)[None, :] <= (torch.arange(new) + past)[:, None]
        keys, values = [], []
        for index, (qkv, mix) in enumerate(zip(self.qkv, self.mix, strict=True)):
            q, k, v = qkv(x).view(batch, new, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
            k = torch.cat([past_keys[:, index], k], dim=2)
            v = torch.cat([past_values[:, index], v], dim=2)
            scores = (q @ k.transpose(-1, -2)).masked_fill(~visible, -1e4)
            x = x + mix((scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, new, width))
            keys.append(k)
            values.append(v)
        return self.head(x), torch.stack(keys, dim=1), torch.stack(values, dim=1)


def build():
    torch.manual_seed(0)
    model = ToyDecoder().eval()
    past = torch.zeros(1, 2, 2, 2, 16)
    return model, (torch.tensor([[1, 2, 3]]), past, past.clone())
