"""llama.cpp beside ondevice-bench on SmolLM2-135M: the same GGUF file, prompts, token budget and threads.

    python tools/llamacpp_peer.py [bench-results/run-....json] [--runs 3]

llama.cpp is the runtime a team shipping a small LLM would otherwise use, so its figures are the peer
baseline for `bench run llm`. This study runs llama-cpp-python on the wheel's Q4_1 GGUF (the file the
zoo's `smollm2_135m` is dequantized from) with the `llm` profile's prompt lengths, token budget, thread
count and held-out prompts, and prints, per prompt length, time to first token, prompt tokens/s, decode
ms/token with its 95% interval over runs and tokens/s; its peak memory; and how often its greedy
continuation of each held-out parity prompt matches the torch fp32 reference's. Given a `bench run llm`
results file, the same columns of every `smollm2_135m` variant print above it, from that file.

It is a study, not a backend: llama-cpp-python builds llama.cpp from source (docs/generative.md gives
the build time on the 2-core VM), which CI does not spend. llama.cpp runs the 4-bit file itself while the
reference runs its dequantized weights, so token agreement measures llama.cpp's Q4_1 kernels (activations
quantized to 8 bits), not a conversion. Unpaired: llama.cpp's figures come from its own process, measured
after ondevice-bench's run, so compare intervals, not single figures, and on a quiet machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INSTALL = (
    "llama-cpp-python is not installed: pip install -c constraints.txt -e '.[llm,llamacpp]' "
    "(it builds llama.cpp from source: minutes on 2 cores, see docs/generative.md)"
)


@dataclass(frozen=True)
class PeerRun:
    """What the llama.cpp process measured: per prompt length, each run's TTFT and decode step times (ms);
    each parity prompt's greedy continuation; its load time and peak resident memory."""

    load_s: float
    ttft_ms: dict[int, list[float]]
    decode_ms: dict[int, list[list[float]]]
    continuations: list[list[int]]
    peak_rss_bytes: int


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _generate(llm: object, prompt: list[int], new_tokens: int) -> tuple[list[float], list[int]]:
    """Greedy generation: the time stamp of each token after the call (ms) and the tokens."""
    llm.reset()  # type: ignore[attr-defined]  # n_tokens = 0: no prefix of an earlier prompt is reused
    stamps: list[float] = []
    tokens: list[int] = []
    start = time.perf_counter()
    for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):  # type: ignore[attr-defined]
        stamps.append((time.perf_counter() - start) * 1000)
        tokens.append(int(token))
        if len(tokens) == new_tokens:
            break
    return stamps, tokens


def measure_peer(
    gguf: str, timing: dict[int, list[int]], prompts: list[list[int]], new_tokens: int, threads: int, runs: int
) -> PeerRun:
    """Runs in its own spawned process, so its peak memory is llama.cpp's and the GGUF's alone."""
    from llama_cpp import Llama

    start = time.perf_counter()
    llm = Llama(
        model_path=gguf,
        n_ctx=max(len(p) for p in timing.values()) + new_tokens,
        n_batch=max(len(p) for p in timing.values()),
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    load_s = time.perf_counter() - start
    continuations = [_generate(llm, prompt, new_tokens)[1] for prompt in prompts]
    ttft: dict[int, list[float]] = {}
    decode: dict[int, list[list[float]]] = {}
    for length, prompt in timing.items():
        _generate(llm, prompt, 4)  # warm-up at this length
        for _ in range(runs):
            stamps, _tokens = _generate(llm, prompt, new_tokens)
            ttft.setdefault(length, []).append(stamps[0])
            decode.setdefault(length, []).append(list(np.diff(stamps)))
    return PeerRun(load_s, ttft, decode, continuations, _peak_rss_bytes())


def _ours(results: Path) -> list[str]:
    """Each `smollm2_135m` variant's columns from a `bench run llm` results file."""
    from harness.results.schema import load_results

    rows = []
    for result in load_results(results).results:
        gen = result.generation
        if result.model != "smollm2_135m" or result.status != "ok" or gen is None:
            continue
        for length in gen.prompt_lengths:
            key = str(length)
            ttft, decode = gen.ttft_ms.get(key), gen.decode_ms_per_token.get(key)
            if ttft is None or decode is None:
                continue
            peak = gen.peak_rss_bytes_by_context.get(str(length + gen.new_tokens))
            rows.append(_row(result.variant, length, ttft.median, decode.median, decode.ci95, peak and peak / 1e6))
    return rows


def _row(name: str, length: int, ttft: float, decode: float, ci: list[float], peak_mb: float | None) -> str:
    interval = f"[{ci[0]:.1f}, {ci[1]:.1f}]"
    memory = f"{peak_mb:8.0f}" if peak_mb else f"{'-':>8}"
    return (
        f"{name:<22} {length:>6} {ttft:>9.1f} {length / ttft * 1000:>8.0f} {decode:>8.1f} {interval:>14} "
        f"{1000 / decode:>6.1f} {memory}"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", type=Path, help="a `bench run llm` results file to print beside")
    parser.add_argument("--runs", type=int, default=3, help="timed generations per prompt length (default 3)")
    args = parser.parse_args(argv)
    try:
        import llama_cpp
    except ImportError:
        print(INSTALL, file=sys.stderr)
        return 2
    from harness.generation.measure import greedy, torch_step
    from harness.results.stats import summarise
    from profiles.schema import load_profile
    from profiles.zoo import decoder_info, load_model, resolve_model
    from profiles.zoo.smollm2 import gguf_path, unavailable

    if (why := unavailable()) is not None:
        print(f"smollm2_135m is unavailable: {why}", file=sys.stderr)
        return 2
    profile = load_profile("llm").profile
    settings, threads = profile.generation, profile.measure.threads or 1
    spec = resolve_model("smollm2_135m")
    lengths = settings.prompt_lengths
    needed = max(settings.parity_prompt_tokens, settings.parity_text_tokens, max(lengths))
    rows = spec.dataset(max(profile.parity.samples, 1), "parity").inputs[0][:, :needed]  # type: ignore[union-attr]
    prompts = rows[:, : settings.parity_prompt_tokens]
    timing = {n: [int(t) for t in rows[0, :n]] for n in lengths}

    loaded = load_model(spec)
    info = decoder_info(loaded)
    assert info is not None, "smollm2_135m follows the decoder protocol"
    step, empty = torch_step(loaded.module), info.empty_cache()
    reference = [greedy(step, p, settings.new_tokens, empty) for p in prompts]
    del loaded, step

    print(f"llama-cpp-python {llama_cpp.__version__} on {gguf_path().name}, {threads} thread(s), {args.runs} runs")
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        peer: PeerRun = pool.apply(
            measure_peer,
            (str(gguf_path()), timing, [list(map(int, p)) for p in prompts], settings.new_tokens, threads, args.runs),
        )
    header = (
        f"{'variant':<22} {'prompt':>6} {'TTFT ms':>9} {'pp tok/s':>8} {'ms/tok':>8} {'95% CI':>14} "
        f"{'tok/s':>6} {'peak MB':>8}"
    )
    print(header)
    if args.results is not None:
        for line in _ours(args.results):
            print(line)
    for length in lengths:
        stats = summarise(peer.decode_ms[length], calls_per_sample=1)
        ttft = float(np.median(peer.ttft_ms[length]))
        print(_row("llama.cpp Q4_1 (GGUF)", length, ttft, stats.median, stats.ci95, peer.peak_rss_bytes / 1e6))
    matches = [list(ref) == got for ref, got in zip(reference, peer.continuations, strict=True)]
    divergence = [
        next((i for i, (a, b) in enumerate(zip(ref, got, strict=False)) if int(a) != b), None)
        for ref, got in zip(reference, peer.continuations, strict=True)
    ]
    first = sorted(d if d is not None else settings.new_tokens for d in divergence)
    print(
        f"llama.cpp load {peer.load_s:.2f} s; greedy continuations equal to torch fp32's: {sum(matches)} of "
        f"{len(matches)} prompts ({settings.new_tokens} tokens each); first divergence median "
        f"{first[len(first) // 2]} (tokens; {settings.new_tokens} = none)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
