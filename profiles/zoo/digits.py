"""`digits_cnn`: trained on scikit-learn's bundled 8x8 digits on first use, then cached."""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
from dataclasses import asdict, dataclass

import numpy as np

from profiles.paths import cache_root
from profiles.zoo.weights import load_cached, save_cached

log = logging.getLogger(__name__)

SPLIT_SEED = 0
TEST_SIZE = 500
EPOCHS = 40


@dataclass(frozen=True)
class DigitsSplit:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_split() -> DigitsSplit:
    """A fixed train/test split of the 1,797 digits, pixels scaled to [0, 1], shaped N x 1 x 8 x 8. Cached
    as arrays on first use: importing scikit-learn costs seconds, and every worker that builds digits_cnn
    (each torch measuring process, each paired process) would pay it."""
    key = hashlib.sha256(f"{inspect.getsource(_split_from_sklearn)}{SPLIT_SEED}:{TEST_SIZE}".encode()).hexdigest()
    path = cache_root() / "weights" / f"digits-split-{key[:16]}.npz"
    if path.exists():
        with np.load(path) as arrays:
            return DigitsSplit(**{name: arrays[name] for name in DigitsSplit.__dataclass_fields__})
    split = _split_from_sklearn()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **asdict(split))
    tmp.replace(path)
    return split


def _split_from_sklearn() -> DigitsSplit:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return DigitsSplit(images[train], data.target[train], images[test], data.target[test])


def _weights_key() -> str:
    from profiles.zoo import nets

    recipe = inspect.getsource(nets.DigitsCNN) + inspect.getsource(_train) + f"{SPLIT_SEED}:{TEST_SIZE}:{EPOCHS}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _train():
    import torch

    from profiles.zoo.nets import DigitsCNN

    split = digits_split()
    torch.manual_seed(0)
    model = DigitsCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train).long()
    batches = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x), generator=batches).split(64):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimiser.step()
    return model.eval()


def trained_digits_cnn():
    """The trained model; trains (a few seconds) and caches the weights on first use."""
    import torch

    from profiles.zoo.nets import DigitsCNN

    path = cache_root() / "weights" / f"digits_cnn-{_weights_key()}.pt"
    model = DigitsCNN()
    if load_cached(path, model):
        return model.eval()
    log.info("training digits_cnn on scikit-learn digits (cached at %s)", path)
    with torch.random.fork_rng():
        model = _train()
    save_cached(path, model)
    return model


def digits_cnn():
    """The zoo factory: the trained model and one held-out digit as its example input."""
    import torch

    return trained_digits_cnn(), torch.from_numpy(np.ascontiguousarray(digits_split().x_test[:1]))
