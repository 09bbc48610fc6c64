"""Preparing several models at once: in their own workers, side by side, handed back in the order asked;
leaving early stops the workers still converting."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path

import pytest

from harness.orchestrate.prepare import PrepareRequest, prepare_many
from profiles.schema import load_profile

MODELS = """
import time

import torch


def fast():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 2).eval(), torch.ones(1, 4)


def slow():
    time.sleep(120)
    return fast()
"""


def test_models_prepare_side_by_side_in_order_and_leaving_early_stops_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONDEVICE_BENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "two.py").write_text(MODELS)
    refs = [f"{tmp_path / 'two.py'}:fast", f"{tmp_path / 'two.py'}:slow"]
    profile = load_profile("smoke", {"models": refs, "variants": ["torch-fp32"]}).profile
    assert profile.convert.jobs == 2
    stages: list[tuple[str, str]] = []
    requests = [
        PrepareRequest(ref, ["torch-fp32"], tmp_path / f"{i}.log", lambda stage, ref=ref: stages.append((ref, stage)))
        for i, ref in enumerate(refs)
    ]
    with closing(prepare_many(requests, tmp_path / "work", profile)) as ready:
        request, prepared = next(ready)
        assert request.model_ref == refs[0] and prepared.artifacts["torch-fp32"].status == "ok"
        assert (refs[1], "building the model") in stages  # the slow model was already being built
        closed_at = time.monotonic()
    assert time.monotonic() - closed_at < 30  # its worker was killed, not waited for (it sleeps 120 s)
