from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from converters.fingerprint import fingerprint_model
from profiles.errors import ModelError
from profiles.zoo import ZOO, LoadedModel, load_model, resolve_model
from profiles.zoo.digits import digits_split
from profiles.zoo.smollm2 import INSTALL, unavailable


def test_unknown_model_is_one_line_with_the_zoo() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'nope': not in the zoo \(digits_cnn, "):
        resolve_model("nope")


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_run_their_example_inputs(name: str) -> None:
    if name == "smollm2_135m" and unavailable() is not None:
        pytest.skip(INSTALL)
    loaded = load_model(resolve_model(name))
    with torch.inference_mode():
        out = loaded.module(*loaded.example_inputs)
    out = out[0] if isinstance(out, tuple) else out  # a decoder: (logits, keys, values)
    assert out.shape[0] == 1 and torch.isfinite(out).all()


def test_zoo_weights_are_deterministic() -> None:
    first = load_model(resolve_model("mobilenet_v3_small"))
    second = load_model(resolve_model("mobilenet_v3_small"))
    assert fingerprint_model(first).digest == fingerprint_model(second).digest
    with torch.no_grad():
        next(second.module.parameters()).add_(1e-3)
    assert fingerprint_model(first).digest != fingerprint_model(second).digest


def test_fingerprint_tells_apart_classes_sharing_a_file_and_weights() -> None:
    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    class Doubled(Plain):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * self.fc(x)

    torch.manual_seed(0)
    plain = LoadedModel(Plain(), (torch.ones(1, 4),))
    doubled = LoadedModel(Doubled(), (torch.ones(1, 4),))
    doubled.module.load_state_dict(plain.module.state_dict())
    assert fingerprint_model(plain).digest != fingerprint_model(doubled).digest


def test_digits_cnn_is_really_trained() -> None:
    loaded = load_model(resolve_model("digits_cnn"))
    split = digits_split()
    with torch.inference_mode():
        predicted = loaded.module(torch.from_numpy(split.x_test)).argmax(1).numpy()
    accuracy = float(np.mean(predicted == split.y_test))
    assert accuracy > 0.9, accuracy


def test_the_digits_split_is_cached_and_read_back_without_scikit_learn(tmp_path: Path) -> None:
    """Workers that build digits_cnn read the split from the cache: the same arrays, no sklearn import."""
    env = {**os.environ, "ONDEVICE_BENCH_CACHE": str(tmp_path)}
    script = (
        "import sys; from profiles.zoo.digits import digits_split; s = digits_split(); "
        "print(int(s.x_test.sum() * 1000), len(s.y_train), 'sklearn' in sys.modules)"
    )
    first, second = (
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    )
    assert first.split()[:2] == second.split()[:2] and first.split()[1] == "1297"
    assert first.split()[2] == "True" and second.split()[2] == "False"
    assert int(digits_split().x_test.sum() * 1000) == int(first.split()[0])


def test_user_model_from_a_file_and_from_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = textwrap.dedent(
        """
        import torch
        def build():
            return torch.nn.Linear(4, 2), torch.zeros(1, 4)
        def broken():
            return "not a module"
        """
    )
    (tmp_path / "mymodels.py").write_text(source)
    by_path = load_model(resolve_model(f"{tmp_path / 'mymodels.py'}:build"))
    assert tuple(by_path.example_inputs[0].shape) == (1, 4)
    monkeypatch.chdir(tmp_path)
    by_module = resolve_model("mymodels:build")
    assert by_module.name == "mymodels:build" and by_module.task == "generic"
    with pytest.raises(ModelError, match=r"must return \(nn.Module, example_inputs\)"):
        load_model(resolve_model("mymodels:broken"))
    with pytest.raises(ModelError, match="has no callable named 'missing'"):
        load_model(resolve_model("mymodels:missing"))
    with pytest.raises(ModelError, match="cannot import no_such_pkg"):
        load_model(resolve_model("no_such_pkg.mod:build"))
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(f"{tmp_path / 'nope.py'}:build")


def test_a_truncated_cached_weights_file_is_named_and_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 25 item 14: a `digits_cnn-*.pt` in the cache cut short (a full disk, a killed write) made
    every digits_cnn case fail with torch's zip-reader error, naming no file, run after run. The damaged
    file is named in a warning, deleted, and trained and written again."""
    from profiles.zoo.digits import _weights_key, trained_digits_cnn
    from profiles.zoo.nets import DigitsCNN

    monkeypatch.setenv("ONDEVICE_BENCH_CACHE", str(tmp_path))
    path = tmp_path / "weights" / f"digits_cnn-{_weights_key()}.pt"
    path.parent.mkdir()
    torch.save(DigitsCNN().state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        rebuilt = trained_digits_cnn()
    assert f"cached weights {path} are damaged" in caplog.text
    restored = torch.load(path, weights_only=True)  # the file was written again, whole
    assert all(torch.equal(restored[k], v) for k, v in rebuilt.state_dict().items())
