"""Paired A/B: the verdict rule on known numbers, and the paired worker and series on a real ONNX Runtime
artifact against a copy of it slowed by a known fraction (`tools/slowed_backend.py`)."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from converters.base import ConversionContext
from converters.build import build_artifact
from converters.cache import ArtifactCache
from converters.fingerprint import Fingerprint
from harness.orchestrate.ab import Side, two_builds
from harness.pairing.sequential import (
    FAST_THIRD_STATISTIC,
    LOOKS,
    ROUNDS_STATISTIC,
    decide,
    fast_third_log_ratio,
    fastest_third,
    order_adjusted,
    process_log_ratio,
    round_log_ratios,
)
from harness.pairing.series import (
    PairingSettings,
    Series,
    compare_series,
    creation_order,
    pairing_settings,
    precise,
    run_series,
)
from harness.pairing.worker import (
    CALIBRATION_CALLS,
    LEAD_IN_SKIP_MS,
    Arm,
    PairedPlan,
    block_calls,
    lead_in_calls,
    measure_paired,
    reference_share,
    round_order,
    warm_up,
)
from harness.process.messages import PairedMeasured
from harness.process.specs import WorkerSpec
from profiles.catalog import VARIANTS
from profiles.schema import load_profile
from profiles.zoo import LoadedModel
from tests.conftest import bench, one_error_line
from tools.slowed_backend import environment, slowed_copy


def _alternating(n: int) -> list[bool]:
    return [i % 2 == 0 for i in range(n)]


def test_the_verdicts_follow_the_interval_and_the_threshold() -> None:
    rng = np.random.default_rng(0)
    noise = list(rng.normal(0, 0.002, LOOKS[1]))
    same = decide(noise, _alternating(len(noise)), 0.01)
    assert same.verdict == "no change" and same.decided and same.ci95[0] > 0.99 and same.ci95[1] < 1.01
    slower = decide([math.log(1.05) + x for x in noise], _alternating(len(noise)), 0.01)
    assert slower.verdict == "regression" and 1.04 < slower.ratio < 1.06 and slower.ci95[0] > 1.01
    faster = decide([math.log(0.5) + x for x in noise], _alternating(len(noise)), 0.01)
    assert faster.verdict == "improvement" and faster.ci95[1] < 0.99
    on_the_line = decide([math.log(1.01) + x for x in noise], _alternating(len(noise)), 0.01)
    assert on_the_line.verdict == "inconclusive" and not on_the_line.decided
    assert "threshold" in on_the_line.detail or "more processes" in on_the_line.detail


def test_the_verdict_is_read_only_at_the_looks_unless_the_budget_is_spent() -> None:
    values = [math.log(1.10)] * 3 + [math.log(1.101)] * 2  # five processes: not a look
    assert LOOKS[0] > 5 and 5 not in LOOKS
    early = decide(values, _alternating(5), 0.01)
    assert early.verdict == "inconclusive" and not early.decided and early.ci95 == []
    final = decide(values, _alternating(5), 0.01, final=True)
    assert final.verdict == "regression" and final.decided


def test_an_inconclusive_verdict_says_how_many_more_processes_would_decide() -> None:
    rng = np.random.default_rng(1)
    values = list(math.log(1.03) + rng.normal(0, 0.02, LOOKS[0]))  # +3 % with a 2 % spread
    decision = decide(values, _alternating(len(values)), 0.01)
    assert decision.verdict == "inconclusive"
    assert "more processes" in decision.detail and f"{LOOKS[0]} in all" not in decision.detail


def test_the_creation_order_effect_is_taken_out_of_the_spread() -> None:
    """Who is created first moves the log-ratio by +/-1.5 % here; with the order known, the spread left is
    the noise (0.1 %), and A against A reads `no change`; ignoring the order it would not decide."""
    rng = np.random.default_rng(2)
    first = _alternating(LOOKS[1])
    values = [(-0.015 if a else 0.015) + rng.normal(0, 0.001) for a in first]
    mean, sd, df = order_adjusted(values, first)
    assert abs(mean) < 0.001 and sd < 0.002 and df == len(values) - 2
    assert decide(values, first, 0.01).verdict == "no change"
    assert decide(values, [True] * len(values), 0.01).verdict == "inconclusive"  # order unknown: one group


def test_the_process_statistic_is_robust_to_a_burst_on_one_arm() -> None:
    a = [1.0] * 40
    b = [1.0] * 40
    b[10:18] = [3.0] * 8  # a neighbour's burst lands on a few of B's blocks
    assert process_log_ratio(a, b) == pytest.approx(0.0)
    assert process_log_ratio(a, [1.05] * 40) == pytest.approx(math.log(1.05))


def test_the_fast_third_statistic_reads_the_blocks_interference_missed() -> None:
    """Interference that slows most of one arm's blocks (here 20 of 30) leaves its fastest third, and a
    uniform 5 % reads 5 %. A reference with three blocks per half-round (three slots) is read slot by
    slot: under A = B with the same noise its mean is 0, where a third of A's 3x more blocks pooled would
    sit lower than a third of B's."""
    a, b = [1.0] * 30, [1.0] * 30
    b[5:25] = [1.4] * 20
    assert fast_third_log_ratio(a, b) == pytest.approx(0.0)
    assert fast_third_log_ratio(a, [1.05] * 30) == pytest.approx(math.log(1.05))
    rng = np.random.default_rng(5)
    draws = [(rng.normal(1, 0.02, 18), rng.normal(1, 0.02, 6)) for _ in range(4000)]
    by_slots = np.mean([fast_third_log_ratio(a, b) for a, b in draws])  # standard error 0.0002
    pooled = np.mean([math.log(fastest_third(b) / fastest_third(a)) for a, b in draws])
    assert abs(by_slots) < 0.0008 and pooled > 0.001
    with pytest.raises(ValueError, match="at least one round"):
        fast_third_log_ratio([1.0], [1.0])


def test_pairing_reads_variants_by_their_fastest_third_and_builds_by_rounds() -> None:
    profile = load_profile("default").profile
    assert pairing_settings(profile, across_variants=True).statistic == FAST_THIRD_STATISTIC
    gate = pairing_settings(profile, across_variants=False)
    assert gate.statistic == ROUNDS_STATISTIC and gate.lead_in_ms == 0.0


def test_creation_orders_mirror_from_one_process_to_the_next() -> None:
    rng = np.random.default_rng(3)
    first = creation_order(3, 0, rng, ())
    assert sorted(first) == [0, 1, 2]
    assert creation_order(3, 1, rng, first) == first[::-1]


def test_warm_up_times_interleaved_calls_then_calibrates_only_the_fast_arms_in_a_row() -> None:
    """Arm 1 takes 3 ms a call, over two 1 ms blocks: its interleaved timings (after the first) stand.
    Arm 0 is fast: it runs `CALIBRATION_CALLS` more calls in a row, and those are its timings."""
    calls: list[str] = []

    def fast() -> None:
        calls.append("a")

    def slow() -> None:
        calls.append("b")
        started = time.perf_counter()
        while time.perf_counter() - started < 0.003:
            pass

    runners = {0: (fast, lambda: None), 1: (slow, lambda: None)}
    times = warm_up(runners, [1, 0], 4, 60.0, 1.0)
    assert calls == ["b", "a"] * 4 + ["a"] * CALIBRATION_CALLS
    assert len(times[0]) == CALIBRATION_CALLS and len(times[1]) == 3 and min(times[1]) >= 3.0
    calls.clear()
    warm_up(runners, [0, 1], 50, 0.0, 1.0)  # out of time: one interleaved round, then the fast arm's calls
    assert calls == ["a", "b"] + ["a"] * CALIBRATION_CALLS
    assert block_calls([50.0, 0.04, 0.04, 0.04, 0.04], 1.0) == 25  # one slow call is not the rate
    assert block_calls([5.0] * 5, 1.0) == 1


def test_the_reference_gets_about_sqrt_k_blocks_never_two_in_a_row() -> None:
    assert [reference_share(k) for k in (1, 2, 3, 6, 7, 9)] == [1, 1, 2, 2, 3, 3]
    rng = np.random.default_rng(4)
    for _ in range(200):
        order = round_order(7, 2, rng)
        assert sorted(order) == [0, 0, 1, 2, 3, 4, 5, 6]
        assert all(order[k] or order[k + 1] for k in range(len(order) - 1))
    assert sorted(round_order(3, 1, rng)) == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot be kept apart"):
        round_order(2, 3, rng)


def test_a_round_compares_the_means_of_its_blocks_whatever_the_references_share() -> None:
    """Two rounds, A with four blocks per round (two per half-round), B with two: each round's ratio is
    B's mean over A's mean, and the process statistic is their median."""
    a = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    b = [1.1, 1.1, 2.0, 2.0]
    assert round_log_ratios(a, b) == pytest.approx([math.log(1.1), 0.0])
    assert process_log_ratio(a, b) == pytest.approx(math.log(1.1) / 2)


@pytest.fixture(scope="module")
def arm(tmp_path_factory: pytest.TempPathFactory) -> Arm:
    torch.manual_seed(0)
    model = LoadedModel(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU()).eval(), (torch.ones(1, 64),))
    root = tmp_path_factory.mktemp("paired")
    artifact = build_artifact(
        model, Fingerprint("paired"), VARIANTS["onnx-fp32"], ConversionContext(scratch_root=root), ArtifactCache(root)
    )
    inputs = root / "inputs.npz"
    np.savez(inputs, np.ones((1, 64), np.float32))
    spec = WorkerSpec(
        "unused", "onnxruntime", "cpu", artifact["path"], str(inputs), None, "generic", {}, "", 5, 0, 0.2, 1, None
    )
    return Arm(spec)


@pytest.fixture
def slower(arm: Arm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[float], Arm]:
    """`slower(f)`: the arm on a copy of its artifact slowed by `f`, with the backend that slows it
    registered in this process and in the workers it spawns."""
    for name, value in environment().items():
        monkeypatch.setenv(name, value)

    def make(fraction: float) -> Arm:
        copy = slowed_copy(Path(arm.spec.artifact_path), Path(tempfile.mkdtemp(dir=tmp_path)) / "copy", fraction)
        return Arm(dataclasses.replace(arm.spec, artifact_path=str(copy)))

    return make


def test_a_paired_process_records_every_block_of_every_arm_in_rounds(arm: Arm, slower: Callable[[float], Arm]) -> None:
    messages: list[Any] = []
    plan = PairedPlan((arm, slower(0.5), arm), 0.15, 0.2, 3, 1, (2, 0, 1), 7)
    measure_paired(plan, messages.append)
    [measured] = messages
    assert isinstance(measured, PairedMeasured) and measured.created == [2, 0, 1]
    assert measured.rounds >= 3 and all(len(blocks) == 2 * measured.rounds for blocks in measured.blocks_ms)
    assert all(c >= 1 for c in measured.calls)
    slowed = process_log_ratio(measured.blocks_ms[0], measured.blocks_ms[1])
    same = process_log_ratio(measured.blocks_ms[0], measured.blocks_ms[2])
    assert slowed > math.log(1.3) and abs(same) < math.log(1.2)  # 50 % slower reads as such; A/A does not


def test_a_lead_in_runs_untimed_calls_before_every_block(arm: Arm) -> None:
    """5 ms of untimed calls before each 0.2 ms block: the same sampling budget holds far fewer rounds,
    and the calls are recorded per arm; none by default (the baseline gate) or for a slow arm."""
    rounds = {}
    for lead_in_ms in (0.0, 5.0):
        messages: list[Any] = []
        measure_paired(PairedPlan((arm, arm), 0.3, 0.2, 3, 1, (0, 1), 7, lead_in_ms), messages.append)
        [measured] = messages
        rounds[lead_in_ms] = measured.rounds
        assert all(n == 0 for n in measured.lead_in) if not lead_in_ms else all(n >= 2 for n in measured.lead_in)
    assert rounds[5.0] * 3 < rounds[0.0]
    assert lead_in_calls([0.1, 0.1, 0.1], 1.0) == 10 and lead_in_calls([0.1], 0.0) == 0
    assert lead_in_calls([LEAD_IN_SKIP_MS] * 3, 1.0) == 0


def test_a_series_flags_a_slower_arm_and_keeps_every_process(arm: Arm, slower: Callable[[float], Arm]) -> None:
    settings = PairingSettings(0.01, 0.1, 60.0, 0.2, 3, 1, 60.0, 0)
    results = compare_series(arm, {"slow": slower(0.25)}, "reference", settings)
    comparison = results["slow"]
    assert comparison.verdict == "regression" and comparison.ci95[0] > 1.01
    assert len(comparison.processes) >= LOOKS[0] and comparison.against == "reference"
    assert {p.created_first for p in comparison.processes} == {"a", "b"}  # both orders met
    assert all(len(p.a_ms) == len(p.b_ms) >= 6 for p in comparison.processes)


def test_a_series_of_three_contenders_gives_the_reference_two_blocks_per_half_round(arm: Arm) -> None:
    """One process (the budget ends after it): each contender has two blocks per round, the reference
    four, and every contender's record carries the same reference blocks."""
    settings = PairingSettings(0.01, 0.05, 0.5, 0.2, 3, 1, 60.0, 0)
    results = compare_series(arm, {k: Arm(arm.spec) for k in "xyz"}, "reference", settings)
    records = [results[k].processes[0] for k in "xyz"]
    assert all(len(r.a_ms) == 2 * len(r.b_ms) >= 4 for r in records)
    assert records[0].a_ms == records[1].a_ms == records[2].a_ms


def test_series_take_turns_and_one_with_a_precision_goal_takes_what_the_other_left(
    arm: Arm, slower: Callable[[float], Arm]
) -> None:
    """Two series share one budget. Without a goal a 25 % slower arm leaves at its first decided look (6
    processes); the other, with a goal no interval can meet, keeps going after it, until its last look or
    the end of the budget, and its detail says why. While both are open they take turns."""
    plain = PairingSettings(0.01, 0.1, 60.0, 0.2, 3, 1, 60.0, 0)
    goal = PairingSettings(0.01, 0.1, 60.0, 0.2, 3, 1, 60.0, 0, precision=1e-4)
    quick = Series(arm, {"slow": slower(0.25)}, "reference", plain)
    choosy = Series(arm, {"slow": slower(0.25)}, "reference", goal)
    turns: list[str] = []
    # the budget only has to let the quick series reach its first look on a slow VM: the choosy one stops
    # at the last look (LOOKS[-1] processes) if the budget lasts that long
    run_series([quick, choosy], 90.0, lambda s: turns.append("q" if s is quick else "c"))
    decided, narrowing = quick.results["slow"], choosy.results["slow"]
    assert decided.verdict == "regression" and len(decided.processes) == LOOKS[0]
    assert narrowing.verdict == "regression" and len(narrowing.processes) > LOOKS[0], "".join(turns)
    assert "wider than the goal +/-0.0%" in narrowing.detail
    quick_done = len(turns) - turns[::-1].index("q")
    assert turns[:2] == ["q", "c"] and turns[:quick_done].count("c") >= LOOKS[0] - 2


@pytest.mark.parametrize(
    ("ci95", "goal", "met"), [([0.975, 1.025], 0.03, True), ([0.95, 1.05], 0.03, False), ([0.5, 2.0], None, True)]
)
def test_precision_is_the_interval_half_width_relative_to_its_centre(
    ci95: list[float], goal: float | None, met: bool
) -> None:
    assert precise(ci95, goal) is met


ONNX_FILE = Side("old.onnx", None, "/x/old.onnx", "onnxruntime")
PTE_FILE = Side("new.pte", None, "/x/new.pte", "executorch")
ONNX_VARIANT = Side("onnx-fp32", "onnx-fp32", None, "onnxruntime")


@pytest.mark.parametrize(
    ("a", "b", "builds"),
    [(ONNX_FILE, ONNX_FILE, True), (ONNX_FILE, PTE_FILE, False), (ONNX_VARIANT, ONNX_FILE, False)],
)
def test_bench_ab_takes_two_files_of_one_runtime_for_two_builds(a: Side, b: Side, builds: bool) -> None:
    assert two_builds([a, b]) is builds


def test_bench_ab_pairs_two_backends_and_gives_the_verdict_and_exit_code(tmp_path: Path) -> None:
    out = tmp_path / "ab.json"
    proc = bench("ab", "torch-fp32", "onnx-fp32", "-m", "digits_cnn", "--pair-budget", "12", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr  # ONNX Runtime is faster than eager torch here
    assert proc.stdout.startswith("onnx-fp32 vs torch-fp32 on cpu: ")
    assert f"paired as two variants, with lead-in; per process: {FAST_THIRD_STATISTIC}" in proc.stdout
    comparison = json.loads(out.read_text())
    assert comparison["against"] == "torch-fp32" and comparison["ratio"] < 1
    assert len(comparison["processes"]) >= 1 and comparison["statistic"] == FAST_THIRD_STATISTIC
    assert all(min(p["lead_in"]) >= 1 for p in comparison["processes"])  # two runtimes: a lead-in per block
    same = bench("ab", "torch-fp32", "torch-fp32", "-m", "digits_cnn", "--pair-budget", "3")
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.startswith("torch-fp32 vs torch-fp32 on cpu: ")
    assert "paired process" not in same.stdout  # two torch sessions share one process
    wrong = bench("ab", "onnx-fp32", "no-such-variant", "-m", "digits_cnn")
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: 'no-such-variant': neither a variant")


class _CoreMLStateful:
    """Core ML's MLModel for a stateful decoder (coremltools 9: `make_state()`, `predict(feed, state)`),
    which cannot predict on Linux: it records every call and answers with logits of the fed length."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, tuple[tuple[int, ...], str]], int]] = []
        self.states: list[object] = []

    def make_state(self) -> object:
        self.states.append(object())
        return self.states[-1]

    def predict(self, feed: dict[str, np.ndarray], state: object) -> dict[str, np.ndarray]:
        self.calls.append(({k: (v.shape, v.dtype.name) for k, v in feed.items()}, self.states.index(state)))
        return {"logits": np.zeros((1, feed["tokens"].shape[1], 8), np.float16)}


class _StatefulSession:
    """The attributes `harness.backends.coreml.CoreMLSession` gives a stateful decoder's spec
    (`converters.coreml.decoder`: inputs tokens and positions, int32 and float32)."""

    def __init__(self) -> None:
        self.model = _CoreMLStateful()
        self.input_names = ["tokens", "positions"]
        self.input_dtypes = {"tokens": np.dtype(np.int32), "positions": np.dtype(np.float32)}
        self.output_names = ["logits"]


def _decoder_files(root: Path, prompt_tokens: int) -> tuple[str, str]:
    """A decoder case's generation.npz (timing prompt, lengths) and inputs.npz (the torch reference's
    decode step: token, keys, values of shape 1 x layers x heads x past x head_dim)."""
    parity, inputs = root / "generation.npz", root / "inputs.npz"
    np.savez(parity, timing_prompt=np.arange(40, dtype=np.int64), lengths=np.array([prompt_tokens, 32]))
    cache = np.ones((1, 2, 2, prompt_tokens, 8), np.float32)
    np.savez(inputs, np.array([[5]], np.int64), cache, cache)
    return str(parity), str(inputs)


def test_a_stateful_core_ml_arm_runs_a_decode_step_through_its_own_adapter(tmp_path: Path) -> None:
    """Never the reference's (tokens, past keys, past values): the prompt is prefilled into a new state,
    then each call is one token at positions P+1 on that same state."""
    from harness.generation.measure import decode_step_call

    session = _StatefulSession()
    call = decode_step_call(session, *_decoder_files(tmp_path, 16))
    call()
    call()
    model = session.model
    prefill = ({"tokens": ((1, 16), "int32"), "positions": ((1, 16), "float32")}, 0)
    step = ({"tokens": ((1, 1), "int32"), "positions": ((1, 17), "float32")}, 0)
    assert model.calls == [prefill, step, step] and len(model.states) == 1


def test_a_generative_arm_without_a_step_adapter_is_left_out_of_pairing_with_the_reason(
    arm: Arm, tmp_path: Path
) -> None:
    """A one-input graph marked as a decoder: that arm leaves the series with the reason, the others are
    still measured and decided; a reference that cannot be paired closes its series with the reason."""
    parity, _ = _decoder_files(tmp_path, 16)
    odd = Arm(dataclasses.replace(arm.spec, task="generation", parity_path=parity))
    settings = PairingSettings(0.01, 0.05, 60.0, 0.2, 3, 1, 60.0, 0)
    results = compare_series(arm, {"odd": odd, "same": Arm(arm.spec)}, "reference", settings)
    assert results["odd"].detail.startswith("left out of pairing: its inputs (input) are neither")
    assert not results["odd"].processes and results["same"].processes
    closed = compare_series(odd, {"same": Arm(arm.spec)}, "reference", settings)
    assert closed["same"].detail.startswith("the reference left out of pairing: its inputs (input)")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x08\x07garbage\xff\xfe" * 40, "does not load or run on digits_cnn's inputs: "),
        (b"just some text, not a model\n", "does not load or run on digits_cnn's inputs: "),
        (b"", "is empty, not a .onnx artifact"),
        (None, "is a directory; a .onnx artifact is a file"),
    ],
    ids=["garbage", "text", "empty", "directory"],
)
def test_bench_ab_refuses_an_artifact_that_is_not_a_model_before_measuring(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    """`bench ab onnx-fp32 B.onnx` with B garbage, a text file, an empty file or a directory named
    `x.onnx`: it used to print `no ratio inconclusive (paired process InvalidProtobuf ...)` and exit 0,
    so a CI gate handed a broken artifact passed. The artifact is refused before measuring: one line
    naming it, exit 2, no paired process run."""
    artifact = tmp_path / "x.onnx"
    if content is None:
        artifact.mkdir()
    else:
        artifact.write_bytes(content)
    line = one_error_line(bench("ab", "onnx-fp32", str(artifact), "-m", "digits_cnn", "--pair-budget", "5"), 2)
    assert line.startswith(f"error: {artifact}: {expected}"), line


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notice
def test_bench_ab_refuses_a_model_with_other_inputs_before_measuring(tmp_path: Path) -> None:
    """A valid ONNX model whose inputs are not the model's (a 4-wide linear layer against digits_cnn's
    images) used to fail in every paired process (`Invalid rank`) and read as inconclusive, exit 0. It
    is refused with the runtime's first line, exit 2."""
    other = tmp_path / "linear.onnx"
    torch.onnx.export(torch.nn.Linear(4, 4), (torch.randn(1, 4),), str(other), dynamo=False)
    line = one_error_line(bench("ab", "onnx-fp32", str(other), "-m", "digits_cnn", "--pair-budget", "5"), 2)
    assert line.startswith(f"error: {other}: does not load or run on digits_cnn's inputs: "), line
    assert "INVALID_ARGUMENT" in line or "Invalid" in line, line


FLAKY = '''
import torch


class Flaky(torch.nn.Module):
    """Runs its first 1000 calls, then fails every call: loads and runs once, fails when measured."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(16, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1000 and not torch.jit.is_tracing():
            raise RuntimeError(f"flaky: call {self.calls} fails")
        return self.linear(x)


def build():
    torch.manual_seed(0)
    return Flaky().eval(), torch.randn(1, 16)
'''


@pytest.mark.slow
def test_bench_ab_fails_when_a_paired_process_fails(tmp_path: Path) -> None:
    """A model that loads and runs once but fails once it is measured: every paired process errors. It
    used to read `no ratio inconclusive (paired process RuntimeError ...)`, exit 0; the comparison is an
    error, with the worker's first line, exit 1."""
    (tmp_path / "flakymodels.py").write_text(FLAKY)
    proc = bench("ab", "torch-fp32", "torch-fp32", "-m", "flakymodels:build", "--pair-budget", "20", cwd=tmp_path)
    line = one_error_line(proc, 1)
    assert line.startswith("error: torch-fp32 vs torch-fp32: paired process RuntimeError: flaky: call "), line
    assert "inconclusive" not in proc.stdout
