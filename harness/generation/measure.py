"""Generative workloads: a decoder (the zoo's decoder protocol) measured and judged token by token.

Prepare side (in the prepare worker): the torch fp32 reference's greedy continuations of held-out prompts,
its next-token predictions and log-likelihoods on held-out text, the prompts timing uses, and calibration
inputs with a real cache. Everything goes into one `generation.npz`, the case's parity file.

Worker side: every variant runs the same work, greedy decoding with a fixed token budget. Per prompt
length: time to first token (prefill plus the first argmax), then each decode step timed; peak memory per
context length; CPU time per token. Parity: first divergence of the greedy continuation, next-token
agreement and perplexity ratio on held-out text, gated per variant family.

A decoder's `inputs.npz` holds one decode step at the first prompt length's context (the next token and
the torch reference's cache of the prompt): it gives the cache's shape. The arrays are the reference's and
fit only a graph with the same inputs, so a generative arm of a paired process never takes them: it
prefills the timing prompt through its own step adapter (`decode_step_call`, state included for Core ML)
and repeats that decode step, or is left out of pairing with the reason (`NotPairable`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.accuracy.parity import check_gate
from harness.process.messages import Diagnosis, GenerationTiming, KvCache
from harness.results.schema import Divergence, GenerationSummary, ParityResult

if TYPE_CHECKING:
    from harness.backends.base import Backend, Session
    from harness.process.specs import WorkerSpec
    from profiles.zoo import DecoderInfo, LoadedModel, ModelSpec

# gate key -> (metric, "min" or "max"); defaults per variant family, a profile's keys override them
GATE_KEYS = {
    "full_match_min": ("full_match", "min"),
    "first_divergence_median_min": ("first_divergence_median", "min"),
    "next_token_agreement_min": ("next_token_agreement", "min"),
    "perplexity_ratio_max": ("perplexity_ratio", "max"),
}
DEFAULT_GATES: dict[str, dict[str, float]] = {
    "fp32": {"full_match_min": 1.0, "perplexity_ratio_max": 1.001},
    "fp16": {"full_match_min": 0.5, "perplexity_ratio_max": 1.01},
    "int8": {"next_token_agreement_min": 0.9, "perplexity_ratio_max": 1.05},
    "int4": {"next_token_agreement_min": 0.8, "perplexity_ratio_max": 1.1},
    "palettized": {"next_token_agreement_min": 0.8, "perplexity_ratio_max": 1.1},
}
MIN_ROUNDS = 2
CALIBRATION_PAST = 64
CALIBRATION_TOKENS = 32


@dataclass(frozen=True)
class GenerationSettings:
    """What every variant of a decoder does (from the profile's [generation] table)."""

    prompt_lengths: tuple[int, ...] = (16, 128, 512)
    new_tokens: int = 64
    parity_prompt_tokens: int = 32
    parity_text_tokens: int = 256
    required: bool = False  # the profile has a [generation] table: every model must follow the decoder protocol

    def usable_lengths(self, max_context: int) -> list[int]:
        """Prompt lengths whose prompt plus token budget fits the decoder's context."""
        return [n for n in self.prompt_lengths if n + self.new_tokens <= max_context]

    def skipped_lengths(self, max_context: int) -> dict[str, str]:
        """The prompt lengths left out, each with why: a decoder runs the lengths that fit, and says which
        it could not, so a column missing from its table is never silent."""
        return {
            str(n): f"{n} + {self.new_tokens} new tokens exceed max_context {max_context}"
            for n in self.prompt_lengths
            if n + self.new_tokens > max_context
        }


def gate_for(family: str, profile_gate: dict[str, float]) -> dict[str, float]:
    """The family's generation defaults with the profile's generation keys on top (others do not apply)."""
    gate = dict(DEFAULT_GATES.get(family, {}))
    gate.update({k: float(v) for k, v in profile_gate.items() if k in GATE_KEYS and v is not None})
    return gate


# ---- running a decoder through any backend session ------------------------------------------------------

Step = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


STATEFUL_INPUTS = ["tokens", "positions"]  # converters.coreml.decoder and converters.executorch: the cache is state


def session_step(session: Session) -> Step:
    """One forward of the decoder graph: (tokens 1 x T, past keys, past values) -> (logits, keys, values)."""
    if getattr(session, "input_names", None) == STATEFUL_INPUTS:
        return program_state_step(session) if getattr(session, "cache_in_program", False) else stateful_step(session)

    def step(tokens: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, new_keys, new_values = session.run([tokens, keys, values])
        return logits, new_keys, new_values

    return step


def stateful_step(session: Any) -> Step:
    """A Core ML decoder whose cache is model state (macOS 15+; not runnable on Linux). The caller's cache
    arrays become markers whose axis 3 is the past length; a prefill (past 0) starts a fresh state."""
    from converters.coreml.inputs import cast_to_spec

    state: list[Any] = []

    def step(tokens: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        past = keys.shape[3]
        if past == 0:
            state[:] = [session.model.make_state()]
        end = past + tokens.shape[1]
        feed = cast_to_spec({"tokens": tokens, "positions": np.zeros((1, end), np.float32)}, session.input_dtypes)
        out = session.model.predict(feed, state[0])
        marker = np.zeros((1, 1, 1, end, 1), np.float32)
        return np.asarray(out[session.output_names[0]], np.float32), marker, marker

    return step


def program_state_step(session: Any) -> Step:
    """An ExecuTorch decoder whose static cache lives in the loaded method (`converters.executorch`): the
    caller's cache arrays become markers whose axis 3 is the past length, as for Core ML. No state is reset:
    a prefill writes from position 0 and attention reads only the positions before the end, so what an
    earlier sequence left beyond them is never read."""

    def step(tokens: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        end = keys.shape[3] + tokens.shape[1]
        logits = session.run([tokens.astype(np.int64), np.zeros((1, end), np.float32)])[0]
        marker = np.zeros((1, 1, 1, end, 1), np.float32)
        return logits, marker, marker

    return step


class NotPairable(Exception):
    """A generative arm that cannot run a decode step of its own in a paired process (the reason)."""


def step_refusal(session: Any) -> str | None:
    """Why `session_step` has no adapter for this session, or None: a decoder graph takes (tokens, past keys,
    past values), a stateful Core ML decoder (tokens, positions) with the cache as state."""
    names = getattr(session, "input_names", None)
    if names is None or names == STATEFUL_INPUTS or len(names) == 3:
        return None
    return (
        f"its inputs ({', '.join(names)}) are neither a decoder graph's (tokens, past keys, past values) "
        f"nor a stateful Core ML decoder's ({', '.join(STATEFUL_INPUTS)})"
    )


def empty_cache(inputs_path: str) -> np.ndarray:
    """An empty cache (past length 0) of the shape the decoder's `inputs.npz` holds."""
    with np.load(inputs_path) as decode_step:  # [token, keys, values]
        shape = decode_step["arr_1"].shape
    return np.zeros((*shape[:3], 0, shape[4]), np.float32)


def kv_cache_record(session: Any, cache_shape: tuple[int, ...]) -> KvCache:
    """The KV cache as this backend holds it: a stateful Core ML decoder allocates its fp16 state at
    `max_context` up front (`state_bytes`, whatever context is used), an ExecuTorch decoder its fp32
    buffers (`state_kind` says which); a graph with the cache as inputs and
    outputs holds fp32 keys and values that grow with the context (layers x heads x head_dim each)."""
    held = getattr(session, "state_bytes", None)
    if held is not None:
        return KvCache(
            getattr(session, "state_kind", "Core ML state, fp16, allocated at max_context"), state_bytes=int(held)
        )
    per_token = int(2 * cache_shape[1] * cache_shape[2] * cache_shape[4] * 4)
    return KvCache("graph inputs and outputs, fp32, grows with the context", bytes_per_token=per_token)


def decode_step_call(session: Any, parity_path: str | None, inputs_path: str) -> Callable[[], Any]:
    """One decode step at the first prompt length's context, as a zero-argument call, through the session's
    own step adapter (the one the unpaired generation path uses): the timing prompt is prefilled by this
    session, so each backend runs on its own cache (Core ML's in its state). Repeating the call repeats the
    same step, as the cache does not grow. Raises `NotPairable` where the session has no adapter or the
    prompt is missing."""
    if parity_path is None:
        raise NotPairable("no generation.npz to prefill the decode step from")
    reason = step_refusal(session)
    if reason is not None:
        raise NotPairable(reason)
    step = session_step(session)
    data = _npz(parity_path)
    prompt = data["timing_prompt"][: int(data["lengths"][0])].astype(np.int64)
    token, keys, values = decode_step_inputs(step, prompt, empty_cache(inputs_path))
    return lambda: step(token, keys, values)


def checked_step(step: Step, vocab_size: int, model: str) -> Step:
    """`step` with what the decoder protocol says a forward returns checked on every call: logits
    (1, T, vocab_size) for T tokens fed, and both caches grown by T positions on axis 3. A decoder that
    returns its cache unchanged would otherwise pass parity (the same wrong tokens as torch's) and report
    memory growth it does not have; one whose logits are narrower than its vocabulary would fail deep in
    the scoring. Either raises `ModelError` naming the rule, which fails the case with that reason."""
    from profiles.errors import ModelError

    def checked(tokens: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, new_keys, new_values = step(tokens, keys, values)
        fed, past = tokens.shape[1], keys.shape[3]
        if tuple(logits.shape) != (1, fed, vocab_size):
            raise ModelError(
                f"model '{model}': forward returned logits {tuple(logits.shape)} for {fed} token(s); the decoder "
                f"protocol needs (1, {fed}, vocab_size) with vocab_size {vocab_size}"
            )
        for name, grown in (("keys", new_keys), ("values", new_values)):
            if grown.ndim != 5 or grown.shape[3] != past + fed:
                positions = grown.shape[3] if grown.ndim == 5 else f"a {grown.ndim}-d array, not"
                raise ModelError(
                    f"model '{model}': the {name} cache did not grow by the {fed} token(s) fed: {past} positions in, "
                    f"{positions} out (expected {past + fed}); the decoder protocol appends the new positions on axis 3"
                )
        return logits, new_keys, new_values

    return checked


def greedy(step: Step, prompt: np.ndarray, new_tokens: int, empty: np.ndarray) -> np.ndarray:
    """Greedy continuation of a prompt (1-D ids), `new_tokens` ids long."""
    logits, keys, values = step(prompt[None, :].astype(np.int64), empty, empty)
    out = [int(np.argmax(logits[0, -1]))]
    while len(out) < new_tokens:
        logits, keys, values = step(np.array([[out[-1]]], np.int64), keys, values)
        out.append(int(np.argmax(logits[0, -1])))
    return np.array(out, np.int64)


def decode_step_inputs(step: Step, prompt: np.ndarray, empty: np.ndarray) -> list[np.ndarray]:
    """[next token (1 x 1), keys, values] after prefilling `prompt`: one decode step's inputs at context
    len(prompt). Calling the graph on them repeatedly repeats the same step (the cache does not grow)."""
    logits, keys, values = step(prompt[None, :].astype(np.int64), empty, empty)
    return [np.array([[int(np.argmax(logits[0, -1]))]], np.int64), keys, values]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def teacher_forced(step: Step, text: np.ndarray, empty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per position of each text row: the predicted next id and the log-likelihood of the true next id."""
    predictions, likelihoods = [], []
    for row in text:
        logits, _, _ = step(row[None, :-1].astype(np.int64), empty, empty)
        scores = log_softmax(logits[0])
        predictions.append(scores.argmax(-1))
        likelihoods.append(scores[np.arange(len(row) - 1), row[1:]])
    return np.stack(predictions), np.stack(likelihoods)


# ---- prepare side ---------------------------------------------------------------------------------------


def token_windows(spec: ModelSpec, info: DecoderInfo, count: int, length: int, purpose: str, seed: int) -> tuple:
    """(count x length ids, source): the model's text where it has a dataset, else seeded random ids."""
    if spec.dataset is not None:
        data = spec.dataset(count, purpose).inputs[0]
        if data.shape[1] >= length:
            return np.ascontiguousarray(data[:, :length]).astype(np.int64), f"dataset:{spec.name}"
    rng = np.random.default_rng([seed, 0 if purpose == "parity" else 1])
    return rng.integers(0, info.vocab_size, (count, length), dtype=np.int64), "synthetic"


def torch_step(module: Any) -> Step:
    import torch

    def step(tokens: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            logits, k, v = module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in (tokens, keys, values)))
        return logits.float().numpy(), k.float().numpy(), v.float().numpy()

    return step


def prepare_reference(
    spec: ModelSpec,
    loaded: LoadedModel,
    info: DecoderInfo,
    settings: GenerationSettings,
    samples: int,
    seed: int,
    out: Path,
) -> str:
    """Writes `generation.npz` (reference continuations and text scores, timing prompt) and `inputs.npz`
    (one decode step, see the module docstring); returns where the text came from."""
    step = checked_step(torch_step(loaded.module), info.vocab_size, spec.name)
    empty = info.empty_cache()
    lengths = settings.usable_lengths(info.max_context)
    if not lengths:
        from profiles.errors import ModelError

        raise ModelError(
            f"model '{spec.name}': no prompt length in {list(settings.prompt_lengths)} leaves room for "
            f"{settings.new_tokens} new tokens in its context of {info.max_context}"
        )
    needed = max(settings.parity_prompt_tokens, settings.parity_text_tokens, max(lengths))
    rows, source = token_windows(spec, info, max(samples, 1), needed, "parity", seed)
    prompts = rows[:, : settings.parity_prompt_tokens]
    text = rows[:, : settings.parity_text_tokens]
    continuations = np.stack([greedy(step, p, settings.new_tokens, empty) for p in prompts])
    predictions, likelihoods = teacher_forced(step, text, empty)
    timing = rows[0, : max(lengths)]
    np.savez(
        out / "generation.npz",
        prompts=prompts,
        continuations=continuations,
        text=text,
        ref_predictions=predictions,
        ref_loglik=likelihoods,
        timing_prompt=timing,
        lengths=np.array(lengths, np.int64),
        new_tokens=np.array(settings.new_tokens),
        vocab_size=np.array(info.vocab_size),
        skipped_lengths=np.array([int(n) for n in settings.skipped_lengths(info.max_context)], np.int64),
        max_context=np.array(info.max_context),
    )
    np.savez(out / "inputs.npz", *decode_step_inputs(step, timing[: lengths[0]], empty))
    return source


def calibration_inputs(
    spec: ModelSpec, loaded: LoadedModel, info: DecoderInfo, count: int, seed: int
) -> tuple[np.ndarray, ...]:
    """Calibration rows with a real cache: (tokens N x 32, keys and values of the 64 tokens before them,
    computed by the fp32 model), from training text, so calibrated recipes see prefill and cache alike."""
    rows, _ = token_windows(spec, info, count, CALIBRATION_PAST + CALIBRATION_TOKENS, "calibration", seed)
    step = torch_step(loaded.module)
    empty = info.empty_cache()
    keys, values = [], []
    for row in rows:
        _, k, v = step(row[None, :CALIBRATION_PAST], empty, empty)
        keys.append(k[0])
        values.append(v[0])
    return rows[:, CALIBRATION_PAST:], np.stack(keys), np.stack(values)


# ---- worker side ----------------------------------------------------------------------------------------


def _npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def evaluate_parity(
    step: Step, data: dict[str, np.ndarray], empty: np.ndarray, gate: dict[str, float], source: str
) -> ParityResult:
    """Token-level parity against the torch fp32 reference on the held-out prompts and text."""
    budget = int(data["new_tokens"])
    divergences = []
    for prompt, reference in zip(data["prompts"], data["continuations"], strict=True):
        produced = greedy(step, prompt, budget, empty)
        differ = np.nonzero(produced != reference)[0]
        divergences.append(int(differ[0]) if len(differ) else budget)
    predictions, likelihoods = teacher_forced(step, data["text"], empty)
    reference_nll = -float(np.mean(data["ref_loglik"]))
    nll = -float(np.mean(likelihoods))
    finite = bool(np.isfinite(likelihoods).all())
    worst = int(np.argmin(divergences))
    metrics: dict[str, float | None] = {
        "nonfinite": float(np.size(likelihoods) - np.isfinite(likelihoods).sum()),
        "next_token_agreement": float(np.mean(predictions == data["ref_predictions"])),
        "first_divergence_median": float(np.median(divergences)),
        "first_divergence_worst": float(divergences[worst]),
        "worst_prompt": float(worst),
        "full_match": float(np.mean(np.array(divergences) == budget)),
        "token_budget": float(budget),
        "perplexity_reference": float(np.exp(reference_nll)),
        "perplexity": float(np.exp(nll)) if finite else None,
        "perplexity_ratio": float(np.exp(nll - reference_nll)) if finite else None,
    }
    failures = check_gate({"nonfinite": metrics["nonfinite"]}, {})
    for key, (metric, kind) in GATE_KEYS.items():
        threshold, value = gate.get(key), metrics.get(metric)
        if threshold is None:
            continue
        if value is None:
            failures.append(f"{metric} is undefined")
        elif kind == "min" and value < threshold:
            failures.append(f"{metric} {value:.4g} < {threshold:.4g}")
        elif kind == "max" and value > threshold:
            failures.append(f"{metric} {value:.4g} > {threshold:.4g}")
    return ParityResult(
        passed=not failures, gate=gate, metrics=metrics, failures=failures, samples=len(divergences), inputs=source
    )


def skipped_reasons(data: dict[str, np.ndarray]) -> dict[str, str]:
    """`GenerationSettings.skipped_lengths` as the reference recorded it in `generation.npz`."""
    settings = GenerationSettings(tuple(int(n) for n in data.get("skipped_lengths", [])), int(data["new_tokens"]))
    return settings.skipped_lengths(int(data["max_context"])) if "max_context" in data else {}


@dataclass
class _Timing:
    ttft_ms: dict[int, list[float]]
    decode_ms: dict[int, list[float]]
    peak_bytes: dict[int, int]  # by prompt length: peak over prefill and decode
    decode_peak_bytes: dict[int, int]  # by prompt length: peak while decoding (the cache, not prefill's scratch)
    decode_cpu_ms: float = 0.0
    decode_tokens: int = 0
    generated: int = 0


def _generate_timed(
    step: Step, prompt: np.ndarray, new_tokens: int, empty: np.ndarray, timing: _Timing, memory: Any = None
) -> None:
    """One greedy generation, timed; with `memory` (a PeakTracker), the peaks of the whole generation and of
    its decode phase alone."""
    length = len(prompt)
    if memory is not None:
        gc.collect()
        memory.reset()
    started = time.perf_counter_ns()
    logits, keys, values = step(prompt[None, :], empty, empty)
    token = int(np.argmax(logits[0, -1]))
    timing.ttft_ms[length].append((time.perf_counter_ns() - started) / 1e6)
    if memory is not None:
        timing.peak_bytes[length] = memory.peak()
        del logits
        gc.collect()
        memory.reset()
    cpu = time.process_time()
    for _ in range(new_tokens - 1):
        started = time.perf_counter_ns()
        logits, keys, values = step(np.array([[token]], np.int64), keys, values)
        token = int(np.argmax(logits[0, -1]))
        timing.decode_ms[length].append((time.perf_counter_ns() - started) / 1e6)
    timing.decode_cpu_ms += (time.process_time() - cpu) * 1000
    if memory is not None:
        timing.decode_peak_bytes[length] = memory.peak()
        timing.peak_bytes[length] = max(timing.peak_bytes[length], timing.decode_peak_bytes[length])
    timing.decode_tokens += new_tokens - 1
    timing.generated += new_tokens


def measure_generation(backend: Backend, spec: WorkerSpec, do_parity: bool, send: Callable[[Any], None]) -> None:
    """The worker's generation path: load (cold), parity, warmup, timed greedy generation per prompt
    length until the budget is spent, memory per context length, then a warm load. Sends one `measured`
    message with the usual keys (`samples_ms`: decode steps at the first prompt length) plus `generation`."""
    from harness.backends.base import DeviceUnavailable, LoadRequest
    from harness.measure.energy import EnergyMeter
    from harness.measure.loop import load_cold, memory_figures, reported, thermal_record, warm_load_ms
    from harness.measure.memory import PeakTracker
    from harness.measure.thermal import read_thermal, thermal_warning
    from harness.process.messages import Measured, Unavailable

    assert spec.parity_path is not None, "a decoder case always has its generation.npz"
    request = LoadRequest(spec.artifact_path, spec.device, spec.threads, spec.model_ref)
    backend.prepare(request)
    data = _npz(spec.parity_path)
    lengths = [int(n) for n in data["lengths"]]
    budget = int(data["new_tokens"])
    memory = PeakTracker()
    load_at = time.time()
    try:
        session, cold = load_cold(backend, request, memory)
    except DeviceUnavailable as exc:
        send(Unavailable(str(exc)))
        return
    step = checked_step(session_step(session), int(data["vocab_size"]), spec.model_ref)
    empty = empty_cache(spec.inputs_path)

    parity = evaluate_parity(step, data, empty, spec.gate, spec.parity_source) if do_parity else None
    prompt = data["timing_prompt"].astype(np.int64)
    warm_timing = _Timing({n: [] for n in lengths}, {n: [] for n in lengths}, {}, {})
    for n in lengths:  # warmup: one generation per length, untimed in the result
        _generate_timed(step, prompt[:n], min(budget, max(2, spec.warmup)), empty, warm_timing)

    timing = _Timing({n: [] for n in lengths}, {n: [] for n in lengths}, {}, {})
    energy = EnergyMeter.for_device(spec.device)
    energy.measure_idle()
    thermal_start = read_thermal()
    energy.begin()
    sampling_started = time.perf_counter()
    for n in lengths:  # first round, shortest context first: memory per context length
        _generate_timed(step, prompt[:n], budget, empty, timing, memory)
    deadline = time.perf_counter() + spec.budget_s
    rounds = 1
    while rounds < MIN_ROUNDS or time.perf_counter() < deadline:
        for n in lengths:
            _generate_timed(step, prompt[:n], budget, empty, timing)
        rounds += 1
    sampling_s = time.perf_counter() - sampling_started
    energy_stats = energy.end(timing.generated)
    thermal_end = read_thermal()
    peak = max(timing.peak_bytes.values())
    describe = reported(session.describe)
    placement = reported(session.placement)
    kv = kv_cache_record(session, empty.shape)
    del session, step
    warm_ms = warm_load_ms(backend, request)

    first = lengths[0]
    send(
        Measured(
            cold_ms=cold.cold_ms,
            warm_ms=warm_ms,
            first_inference_ms=timing.ttft_ms[first][0],
            calls_per_sample=1,
            samples_ms=timing.decode_ms[first],
            memory=memory_figures(memory.source, cold, peak, None),
            energy=energy_stats,
            parity=parity,
            runtime=describe,
            thermal=thermal_warning(thermal_start, thermal_end),
            thermal_state=thermal_record(thermal_start, thermal_end),
            placement=placement,
            load_at=load_at,
            sampling_s=sampling_s,
            generation=GenerationTiming(
                lengths=lengths,
                new_tokens=budget,
                rounds=rounds,
                ttft_ms=timing.ttft_ms,
                decode_ms=timing.decode_ms,
                peak_bytes={n + budget: v for n, v in timing.peak_bytes.items()},
                decode_peak_bytes={n + budget: v for n, v in timing.decode_peak_bytes.items()},
                decode_cpu_ms_per_token=timing.decode_cpu_ms / max(timing.decode_tokens, 1),
                kv=kv,
                skipped_prompt_lengths=skipped_reasons(data),
            ),
        )
    )


# ---- parent side ----------------------------------------------------------------------------------------


def growth_per_1k(peaks: dict[int, int]) -> float | None:
    """Least-squares slope of peak memory against context length, in bytes per 1,000 tokens."""
    if len(peaks) < 2:
        return None
    contexts = np.array([int(k) for k in peaks], float)
    values = np.array(list(peaks.values()), float)
    return float(np.polyfit(contexts, values, 1)[0] * 1000)


def summarise_generation(runs: Sequence[GenerationTiming], seed: int) -> GenerationSummary:
    """Across a case's processes: TTFT and decode ms/token stats per prompt length (median of process
    medians, bootstrap CI), tokens/s, memory per context and its growth per 1k tokens, CPU ms per token."""
    from harness.results.stats import summarise

    lengths = runs[0].lengths
    ttft = {str(n): summarise([r.ttft_ms[n] for r in runs], 1, seed=seed) for n in lengths}
    decode = {str(n): summarise([r.decode_ms[n] for r in runs], 1, seed=seed) for n in lengths}
    tokens_per_s = {n: 1000.0 / stats.median if stats.median > 0 else None for n, stats in decode.items()}
    contexts = runs[0].peak_bytes
    peaks = {c: int(np.median([r.peak_bytes[c] for r in runs])) for c in contexts}
    decode_peaks = {c: int(np.median([r.decode_peak_bytes[c] for r in runs])) for c in contexts}
    kv = runs[0].kv
    return GenerationSummary(
        prompt_lengths=lengths,
        new_tokens=runs[0].new_tokens,
        decoding="greedy, fixed token budget",
        ttft_ms=ttft,
        decode_ms_per_token=decode,
        tokens_per_s=tokens_per_s,
        peak_rss_bytes_by_context={str(c): v for c, v in peaks.items()},
        decode_peak_rss_bytes_by_context={str(c): v for c, v in decode_peaks.items()},
        memory_growth_bytes_per_1k_tokens=growth_per_1k(decode_peaks),
        peak_growth_bytes_per_1k_tokens=growth_per_1k(peaks),
        kv_cache=kv.kind,
        kv_cache_bytes_per_1k_tokens=kv.bytes_per_token * 1000 if kv.bytes_per_token is not None else None,
        kv_state_bytes=kv.state_bytes,
        cpu_ms_per_token=float(np.median([r.decode_cpu_ms_per_token for r in runs])),
        latency_ms_is=f"decode ms/token at a {lengths[0]}-token prompt",
        skipped_prompt_lengths=runs[0].skipped_prompt_lengths,
    )


def diagnose_generation(
    model_ref: str,
    weights_path: str,
    artifact_path: str,
    parity_path: str,
    tolerance_db: float,
    send: Callable[[Any], None],
) -> None:
    """Layer-by-layer diagnosis at the first divergent step: the variant's greedy continuation of each
    prompt is replayed, and the sequence up to the earliest divergence (prompt plus the reference tokens
    before it) is compared layer by layer through `harness.accuracy.diagnose` as one prefill."""
    import tempfile

    import onnxruntime as ort

    from harness.accuracy.diagnose import diagnose, prepared_module

    data = _npz(parity_path)
    session = ort.InferenceSession(artifact_path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def step(tokens: np.ndarray, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = session.run(None, dict(zip(names, (tokens, keys, values), strict=True)))
        return out[0], out[1], out[2]

    module = prepared_module(model_ref, weights_path)
    _, layers, heads, _, head_dim = session.get_inputs()[1].shape  # (1, layers, heads, 'past', head_dim)
    empty = np.zeros((1, layers, heads, 0, head_dim), np.float32)
    budget = int(data["new_tokens"])
    best = (budget, 0)
    for index, (prompt, reference) in enumerate(zip(data["prompts"], data["continuations"], strict=True)):
        produced = greedy(step, prompt, budget, empty)
        differ = np.nonzero(produced != reference)[0]
        if len(differ) and int(differ[0]) < best[0]:
            best = (int(differ[0]), index)
    position, index = best
    sequence = np.concatenate([data["prompts"][index], data["continuations"][index][:position]])[None, :]
    reference_logits, _, _ = torch_step(module)(sequence, empty, empty)
    with tempfile.TemporaryDirectory(prefix="bench-diagnose-gen-") as directory:
        path = Path(directory) / "divergence.npz"
        np.savez(path, input_0=sequence, input_1=empty, input_2=empty, ref_0=reference_logits)

        def forward(message: Diagnosis) -> None:
            report = message.diagnosis
            summary = f"at prompt #{index}, generated token {position}: {report.summary}"
            send(Diagnosis(replace(report, summary=summary, divergence=Divergence(index, position))))

        diagnose(model_ref, weights_path, artifact_path, str(path), tolerance_db, forward)
