"""Adapters through `bench run`: a user's own base and peft adapter directory, written here with peft and
outside the package (acceptance 4, in CI: the path of the `adapters` profile at its smallest), and the
built-in `adapters` profile on its vision adapter (slow)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import bench

USER_MODEL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 8)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def build():
    torch.manual_seed(0)
    return Net().eval(), torch.randn(1, 32)
"""
RANK = 4


def _users_adapter(tmp_path: Path) -> tuple[Path, Path]:
    """The user's factory in a file, and a LoRA adapter of it saved by peft (B random, as a trained one)."""
    import peft
    import torch

    factory = tmp_path / "user_net.py"
    factory.write_text(USER_MODEL)
    module_spec = importlib.util.spec_from_file_location("user_net", factory)
    assert module_spec is not None and module_spec.loader is not None
    user = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(user)
    base, _ = user.build()
    torch.manual_seed(1)
    config = peft.LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=["fc1", "fc2"], init_lora_weights=False)
    adapter = tmp_path / "my_adapter"
    peft.get_peft_model(base, config).save_pretrained(str(adapter))
    return factory, adapter


def _run(tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "run.json"
    proc = bench(
        "run", *args, "--processes", "1", "--budget", "0.2", "--pair-budget", "2",
        "--json", str(out), "--db", f"sqlite:///{tmp_path / 's.sqlite'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_a_users_peft_adapter_directory_runs_end_to_end(tmp_path: Path) -> None:
    factory, adapter = _users_adapter(tmp_path)
    ref = f"{factory}:build+{adapter}"
    profile = tmp_path / "mine.toml"
    profile.write_text(
        f'models = ["{ref}"]\nvariants = ["torch-fp32", "onnx-fp32", "onnx-lora-unfused"]\ndevices = ["cpu"]\n'
        "[parity]\nsamples = 16\n"
    )
    data, stdout = _run(tmp_path, str(profile))
    results = {r["variant"]: r for r in data["results"]}
    assert all(r["status"] == "ok" and r["parity"]["passed"] for r in results.values()), results
    (record,) = data["adapters"]
    assert record["model"] == ref and record["targets"] == ["fc1", "fc2"] and record["ranks"] == [RANK]
    assert record["parameters"] == RANK * (32 + 64) + RANK * (64 + 8) and record["task"] is None
    unfused, fused = results["onnx-lora-unfused"], results["onnx-fp32"]
    paired = unfused["versus_fused"]  # the smallest budget: at least one paired process, maybe no interval yet
    assert paired["against"] == "onnx-fp32" and paired["processes"] and paired["ratio"] > 0
    assert "versus_fused" not in fused
    assert unfused["artifact"]["size_bytes"] > fused["artifact"]["size_bytes"]  # the branch's factors
    assert "adapters" in stdout and "onnx" in stdout and "no dataset to judge its task on" in stdout


@pytest.mark.slow  # about 100 s here, most of it training the adapter in the worker on a fresh cache
def test_the_adapters_profile_runs_its_vision_adapter_and_it_beats_its_base(tmp_path: Path) -> None:
    variants = ["-v", "torch-fp32", "-v", "onnx-fp32", "-v", "onnx-lora-unfused"]
    data, stdout = _run(tmp_path, "adapters", "-m", "digits_cnn+rotated", *variants)
    assert all(r["status"] == "ok" for r in data["results"]), data["results"]
    (record,) = data["adapters"]
    task = record["task"]
    assert task["metric"] == "accuracy" and task["adapter"] > task["base"], task
    assert "digits_cnn+rotated" in stdout and "beats the base" in stdout
