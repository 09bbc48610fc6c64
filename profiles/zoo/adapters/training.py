"""The zoo's adapters, trained with peft on first use and cached as peft adapter directories.

Each is a LoRA (peft's `LoraConfig`, rank `RANK`, on every Linear or Conv2d of the base that a deployed
adapter would touch), fine-tuned on its domain's training split (`profiles.zoo.adapters.domains`) with the
base frozen, a fixed seed and a fixed number of steps, so two machines train the same adapter. Training
takes seconds on 2 cores; the directory is what `PeftModel.save_pretrained` writes, the same thing a user
adapter is (`profiles.zoo.adapters`), so zoo and user adapters load through one path.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from profiles.paths import cache_root

log = logging.getLogger(__name__)

RANK = 8
ALPHA = 16
DECODER_TARGETS = ("qkv", "attention_output", "mlp_in", "mlp_out")
DECODER_STEPS = 40
DECODER_BATCH = 16
DECODER_WINDOW = 64
DECODER_LR = 1e-2
DIGITS_RANK = 4
DIGITS_TARGETS = ("conv1", "conv2", "fc1", "fc2")
DIGITS_EPOCHS = 15
DIGITS_LR = 1e-2


def lora_config(targets: tuple[str, ...], rank: int) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets), lora_dropout=0.0)


def _train_decoder(base: Any, domain: str) -> Any:
    import torch
    import torch.nn.functional as F
    from peft import get_peft_model

    from profiles.zoo.adapters.domains import TEXT_DOMAINS

    text = torch.from_numpy(TEXT_DOMAINS[domain]().train.astype(np.int64))
    torch.manual_seed(0)
    model = get_peft_model(base, lora_config(DECODER_TARGETS, RANK))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=DECODER_LR)
    batches = torch.Generator().manual_seed(0)
    past_k, past_v = base.empty_cache(DECODER_BATCH)
    model.train()
    for _ in range(DECODER_STEPS):
        starts = torch.randint(0, len(text) - DECODER_WINDOW - 1, (DECODER_BATCH,), generator=batches)
        rows = torch.stack([text[s : s + DECODER_WINDOW + 1] for s in starts.tolist()])
        logits, _, _ = model(rows[:, :-1], past_k, past_v)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def _train_rotated_digits(base: Any, domain: str) -> Any:
    import torch
    from peft import get_peft_model

    from profiles.zoo.adapters.domains import rotate
    from profiles.zoo.digits import digits_split

    split = digits_split()
    x, y = torch.from_numpy(rotate(split.x_train)), torch.from_numpy(split.y_train).long()
    torch.manual_seed(0)
    model = get_peft_model(base, lora_config(DIGITS_TARGETS, DIGITS_RANK))
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=DIGITS_LR)
    batches = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(DIGITS_EPOCHS):
        for idx in torch.randperm(len(x), generator=batches).split(64):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimiser.step()
    return model.eval()


TRAINERS = {"decoder": _train_decoder, "rotated_digits": _train_rotated_digits}


def _key(base: Any, trainer: str, domain: str) -> str:
    """Training code and settings, the domain's data and the base's weights: any change trains anew."""
    from profiles.zoo.adapters.domains import TEXT_DOMAINS, rotate

    digest = hashlib.sha256(inspect.getsource(TRAINERS[trainer]).encode())
    digest.update(inspect.getsource(lora_config).encode())
    settings = (RANK, ALPHA, DECODER_TARGETS, DECODER_STEPS, DECODER_BATCH, DECODER_WINDOW, DECODER_LR)
    digest.update(repr((settings, DIGITS_RANK, DIGITS_TARGETS, DIGITS_EPOCHS, DIGITS_LR)).encode())
    if domain in TEXT_DOMAINS:
        digest.update(TEXT_DOMAINS[domain]().train.tobytes())
    else:
        digest.update(inspect.getsource(rotate).encode())
    for name, tensor in sorted(base.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def trained_adapter(base_name: str, base: Any, name: str, trainer: str, domain: str) -> Path:
    """The adapter's peft directory in the cache; trains it on a copy of `base` on first use. Written to a
    directory of this process, then renamed: a reader sees a whole adapter or none."""
    import copy

    import torch

    path = cache_root() / "adapters" / f"{base_name}+{name}-{_key(base, trainer, domain)}"
    if (path / "adapter_config.json").is_file():
        return path
    shutil.rmtree(path, ignore_errors=True)  # a directory without its config is what an older crash left
    log.info("training adapter %s+%s with peft (cached at %s)", base_name, name, path)
    with torch.random.fork_rng():
        model = TRAINERS[trainer](copy.deepcopy(base), domain)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    try:
        tmp.rename(path)
    except OSError:  # another process finished the same adapter first: theirs stands
        shutil.rmtree(tmp, ignore_errors=True)
    return path
