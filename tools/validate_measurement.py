"""Validation study of the measurement method: overhead, false alarms and power, measured here.

    python tools/validate_measurement.py [--paired-processes 300,150,100,100] [--neighbour] [--json out.json]
        [--pool tools/studies/paired-pool.jsonl --pool-s 3600]

(a) Overhead: in each of several fresh processes, blocks of the harness's own sampling loop alternate
    with blocks of a bare `perf_counter_ns` loop over the same session and inputs; the ratio of their
    medians, per process, for a sub-millisecond model and a ~5 ms model.
(b) The paired gate (what `bench run --baseline` runs): one pool of paired processes, each loading
    artifact A and a second session B of the same artifact, B slowed by 0 (A/A), 2, 5 or 10 % (a copy of
    the artifact run by `tools/slowed_backend.py`, which busy-waits that fraction of each real call's
    duration), through the product's paired worker (`harness.pairing.worker`), with the creation order
    mirrored from one process of an arm to the next as `harness.pairing.series` does. The arms' processes
    are interleaved in a seeded random order. Trials are disjoint runs of consecutive processes of one
    arm: a trial takes processes one by one and reads the product's sequential verdict
    (`harness.pairing.sequential.decide`) at its looks, until it is decided, its wall time (process
    start-up included) would pass `--trial-s`, or the last look. With `--neighbour` the tool runs a
    CPU-bound process of its own for the whole pool (the other core of a 2-core VM). With `--pool FILE`
    every paired process is appended to FILE as it is measured and the earlier ones of the same model and
    settings are read back, so a study of thousands of processes can be collected over several invocations
    (`--pool-s` caps one); each invocation is a segment, and trials never span two segments. A pooled
    process keeps the gate's statistic (`log_ratio`) and, from segments measured since it was added, the
    fastest-third statistic that pairs different variants (`fast_third_log_ratio`), so the study can later
    weigh the second for the gate as well. Its paired processes end as the product's do (`exit_at_once`);
    those of earlier segments also ran Python's finalisation (0.5 s in a seven-arm resnet18 process, less
    in two mobilenet arms), which lengthened their trials' wall time and nothing else.
(c) Today's unpaired comparison for contrast: a pool of single-artifact processes per arm, trials of n
    processes per side compared with `harness.results.stats.compare_latency` (what `bench compare` does).
(d) Variance decomposition of log latency: between processes, within a process (the sampling error of
    one process's median), and between two sessions of one process, for the unpaired and paired designs.
    The paired sampling error is read from split halves (each process's statistic over its even rounds
    minus that over its odd rounds), not from the spread of its rounds, which counts slow drift within a
    process as sampling error and overstated it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.pairing.sequential import LOOKS, decide, fast_third_log_ratio, process_log_ratio, round_log_ratios
from harness.pairing.series import creation_order
from harness.pairing.worker import Arm, PairedPlan, measure_paired
from harness.process.isolation import run_isolated
from harness.process.messages import PairedMeasured
from harness.process.specs import WorkerSpec
from harness.results.stats import compare_latency
from tools.slowed_backend import environment, slowed, slowed_copy

SLOWDOWNS = {"A": 0.0, "A'": 0.0, "+2%": 0.02, "+5%": 0.05, "+10%": 0.10}
EFFECTS = {"A/A": 0.0, "+2%": 0.02, "+5%": 0.05, "+10%": 0.10}


def _session(artifact: str) -> tuple[Any, Callable[[], Any], Callable[[], None]]:
    from harness.backends.base import LoadRequest
    from harness.backends.onnxruntime import OnnxRuntimeBackend

    session = OnnxRuntimeBackend().load(LoadRequest(artifact, "cpu", 1, ""))
    inputs = [np.asarray(x) for x in np.load(artifact + ".inputs.npz").values()]
    return session, session.runner(inputs), session.sync


def overhead_worker(artifact: str, blocks: int, block_s: float, send: Callable[[dict], None]) -> None:
    from harness.measure.loop import calibrate, sample

    _, call, sync = _session(artifact)
    for _ in range(20):
        call()
    calls = calibrate(call, sync, 1.0)
    harness_values: list[float] = []
    bare_values: list[float] = []

    def bare() -> None:
        deadline = time.perf_counter() + block_s
        while time.perf_counter() < deadline:
            started = time.perf_counter_ns()
            for _ in range(calls):
                call()
            bare_values.append((time.perf_counter_ns() - started) / 1e6 / calls)

    for block in range(blocks):  # ABBA order, so neither loop always runs first
        if block % 2:
            bare()
        harness_values.extend(sample(call, sync, calls, block_s))
        if not block % 2:
            bare()
    send({"kind": "ratio", "harness": float(np.median(harness_values)), "bare": float(np.median(bare_values))})


def pool_worker(artifact: str, fraction: float, calls: int, budget_s: float, send: Callable[[dict], None]) -> None:
    from harness.measure.loop import sample

    _, call, sync = _session(artifact)
    call = slowed(call, fraction)
    for _ in range(10):
        call()
    send({"kind": "samples", "samples": sample(call, sync, calls, budget_s)})


def export(model: str, directory: Path) -> str:
    """An onnx-fp32 artifact of a zoo model plus its example inputs, through the product's converter."""
    from converters.base import ConversionContext
    from converters.build import build_artifact
    from converters.cache import ArtifactCache
    from converters.fingerprint import fingerprint_model
    from profiles.catalog import VARIANTS
    from profiles.zoo import load_model, resolve_model

    spec = resolve_model(model)
    loaded = load_model(spec)
    with ConversionContext() as ctx:
        info = build_artifact(loaded, fingerprint_model(loaded), VARIANTS["onnx-fp32"], ctx, ArtifactCache())
    source, target = Path(info["path"]).parent, directory / model
    target.mkdir()
    for name in info["files"]:  # names kept: the graph refers to its external data file by name
        (target / name).write_bytes((source / name).read_bytes())
    target = target / "model.onnx"
    np.savez(str(target) + ".inputs.npz", *(t.numpy() for t in loaded.example_inputs))
    return str(target)


def measure_overhead(artifact: str, processes: int) -> dict[str, Any]:
    ratios = []
    for _ in range(processes):
        outcome = run_isolated(overhead_worker, (artifact, 5, 0.2), 120)
        message = next(m for m in outcome.messages if m["kind"] == "ratio")
        ratios.append(message["harness"] / message["bare"])
    return {
        "median_ratio": float(np.median(ratios)),
        "min": float(min(ratios)),
        "max": float(max(ratios)),
        "n": processes,
    }


def build_pool(artifact: str, processes: int, budget_s: float, seed: int) -> dict[str, list[dict[str, Any]]]:
    from harness.measure.loop import calibrate

    _, call, sync = _session(artifact)
    calls = calibrate(call, sync, 1.0)  # frozen for every process of every arm, as the harness does
    pool: dict[str, list[dict[str, Any]]] = {arm: [] for arm in SLOWDOWNS}
    rng = np.random.default_rng(seed)
    arms = list(SLOWDOWNS)
    started = time.perf_counter()
    for round_index in range(processes):
        for arm in rng.permutation(arms):
            began = time.perf_counter()
            outcome = run_isolated(pool_worker, (artifact, SLOWDOWNS[arm], calls, budget_s), 120)
            samples = next(m["samples"] for m in outcome.messages if m["kind"] == "samples")
            pool[arm].append({"samples": samples, "wall_s": time.perf_counter() - began})
        if (round_index + 1) % 25 == 0:
            elapsed = time.perf_counter() - started
            print(f"  pool: {round_index + 1}/{processes} rounds, {elapsed:.0f} s", file=sys.stderr, flush=True)
    return pool


def trials(pool: dict[str, list[dict[str, Any]]], size: int, thresholds: list[float]) -> list[dict[str, Any]]:
    rows = []
    count = len(pool["A"]) // size
    for threshold in thresholds:
        for arm in ("A'", "+2%", "+5%", "+10%"):
            verdicts: Counter[str] = Counter()
            walls = []
            for t in range(count):
                chunk = slice(t * size, (t + 1) * size)
                base = [p["samples"] for p in pool["A"][chunk]]
                other = [p["samples"] for p in pool[arm][chunk]]
                walls.append(sum(p["wall_s"] for p in pool["A"][chunk] + pool[arm][chunk]))
                verdicts[compare_latency(base, other, threshold=threshold, seed=t).verdict] += 1
            flagged = verdicts["regression"] + verdicts["improvement"] if arm == "A'" else verdicts["regression"]
            rows.append(
                {
                    "threshold": threshold,
                    "arm": arm,
                    "processes_per_side": size,
                    "trials": count,
                    "flagged": flagged,
                    "rate": flagged / count if count else None,
                    "verdicts": dict(verdicts),
                    "max_trial_wall_s": max(walls) if walls else None,
                }
            )
    return rows


def _arm(artifact: str) -> Arm:
    inputs = artifact + ".inputs.npz"
    spec = WorkerSpec("", "onnxruntime", "cpu", artifact, inputs, None, "generic", {}, "", 10, 0, 1.0, 1, None)
    return Arm(spec)


def slowed_artifacts(artifact: str) -> dict[str, str]:
    """Each effect's artifact B: a copy slowed by the effect (`tools/slowed_backend.py`), or for A/A the
    artifact itself, a second session of it."""
    source = Path(artifact)
    return {
        effect: str(slowed_copy(source, source.parent.with_name(f"{source.parent.name}-{index}"), fraction))
        if fraction
        else artifact
        for index, (effect, fraction) in enumerate(EFFECTS.items())
    }


def neighbour_load(stop_at: float) -> None:
    """A CPU-bound process: what a busy neighbour on a shared runner does to the other core."""
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) % 2147483648


def _split_half_gap(a_ms: list[float], b_ms: list[float]) -> float:
    """The process statistic of its even rounds minus that of its odd rounds. The two halves interleave in
    time, so what moves the whole process cancels in the gap and only sampling error is left: the
    sampling variance of the whole process's statistic is about gap^2 / 4 (two halves of half the size)."""
    ratios = round_log_ratios(a_ms, b_ms)
    return float(np.median(ratios[0::2]) - np.median(ratios[1::2]))


def build_paired_pool(
    artifact: str, settings: dict[str, Any], sizes: dict[str, int], until: float, seed: int, sink: Callable
) -> list[dict[str, Any]]:
    """`sizes[effect]` paired processes per effect, interleaved in a seeded random order, each record
    passed to `sink` as soon as it is measured; stops early at `until` (a `time.monotonic()` instant)."""
    rng = np.random.default_rng([seed, 7])
    schedule = [effect for effect, count in sizes.items() for _ in range(count)]
    rng.shuffle(schedule)
    made: list[dict[str, Any]] = []
    done_per_effect: Counter[str] = Counter()
    orders: dict[str, tuple[int, ...]] = {effect: () for effect in sizes}
    b_artifacts = slowed_artifacts(artifact)
    started = time.perf_counter()
    for done, effect in enumerate(schedule, start=1):
        if time.monotonic() > until:
            print(f"  paired pool: --pool-s reached after {done - 1} processes", file=sys.stderr, flush=True)
            break
        orders[effect] = creation_order(2, done_per_effect[effect], rng, orders[effect])
        done_per_effect[effect] += 1
        arms = (_arm(artifact), _arm(b_artifacts[effect]))
        plan = PairedPlan(
            arms, settings["arm_s"] * 2, settings["min_block_ms"], 10, 1, orders[effect], int(rng.integers(2**32))
        )
        began = time.perf_counter()
        measured = run_isolated(measure_paired, (plan,), 120, exit_at_once=True).first(PairedMeasured)
        if measured is None:
            raise SystemExit(f"a paired process of {effect} failed")
        a_ms, b_ms = measured.blocks_ms
        record = settings | {
            "effect": effect,
            "log_ratio": process_log_ratio(a_ms, b_ms),
            "fast_third_log_ratio": fast_third_log_ratio(a_ms, b_ms),
            "a_first": measured.created[0] == 0,
            "log_median_a": float(np.log(np.median(a_ms))),
            "log_ratio_of_medians": float(np.log(np.median(b_ms) / np.median(a_ms))),
            "round_sd": float(np.std(round_log_ratios(a_ms, b_ms), ddof=1)),
            "split_half_gap": _split_half_gap(a_ms, b_ms),
            "rounds": len(a_ms) // 2,
            "wall_s": time.perf_counter() - began,
        }
        sink(record)
        made.append(record)
        if done % 50 == 0:
            elapsed = time.perf_counter() - started
            print(f"  paired pool: {done}/{len(schedule)} processes, {elapsed:.0f} s", file=sys.stderr, flush=True)
    return made


def paired_trials(runs: list[dict[str, Any]], threshold: float, trial_s: float) -> list[dict[str, Any]]:
    """Disjoint runs of consecutive processes of one segment, each read by the product's sequential rule;
    a trial still open when its segment (one invocation of this tool) ended is not a trial."""
    trials = []
    segments: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        segments.setdefault(run["segment"], []).append(run)
    for segment in segments.values():
        start = 0
        while start < len(segment):
            wall, taken, decision = 0.0, [], None
            for run in segment[start:]:
                if taken and wall + run["wall_s"] > trial_s:
                    break
                taken.append(run)
                wall += run["wall_s"]
                decision = decide([r["log_ratio"] for r in taken], [r["a_first"] for r in taken], threshold)
                if decision.decided or len(taken) >= LOOKS[-1]:
                    break
            ended = start + len(taken) < len(segment) or len(taken) >= LOOKS[-1]
            if decision is None or not (decision.decided or ended):
                break  # the segment ended mid-trial: not a trial
            if not decision.decided:
                ratios, firsts = [r["log_ratio"] for r in taken], [r["a_first"] for r in taken]
                decision = decide(ratios, firsts, threshold, final=True)
            trials.append({"verdict": decision.verdict, "processes": len(taken), "wall_s": wall})
            start += len(taken)
    return trials


def paired_rows(pool: list[dict[str, Any]], thresholds: list[float], trial_s: float) -> list[dict[str, Any]]:
    rows = []
    for neighbour in sorted({r["neighbour"] for r in pool}):
        for threshold in thresholds:
            for effect in EFFECTS:
                runs = [r for r in pool if r["effect"] == effect and r["neighbour"] == neighbour]
                trials = paired_trials(runs, threshold, trial_s)
                verdicts = Counter(t["verdict"] for t in trials)
                flagged = verdicts["regression"] + (verdicts["improvement"] if effect == "A/A" else 0)
                rows.append(
                    {
                        "neighbour": neighbour,
                        "threshold": threshold,
                        "arm": effect,
                        "processes": len(runs),
                        "trials": len(trials),
                        "flagged": flagged,
                        "rate": flagged / len(trials) if trials else None,
                        "verdicts": dict(verdicts),
                        "median_processes": float(np.median([t["processes"] for t in trials])) if trials else None,
                        "max_trial_wall_s": max(t["wall_s"] for t in trials) if trials else None,
                        "mean_ratio": float(np.exp(np.mean([r["log_ratio"] for r in runs]))) if runs else None,
                    }
                )
    return rows


class PoolFile:
    """Appends each paired process's record as soon as it is measured, so a study can go on over several
    invocations (and an interrupted one keeps what it measured)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")


def read_pool(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of an earlier study kept in `path` (one JSON object per line) measured with the same
    model and settings; others are left out, with a note."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keys = ("model", "arm_s", "min_block_ms")
    kept = [r for r in records if all(r.get(k) == settings[k] for k in keys)]
    if len(kept) < len(records):
        print(f"  {path}: {len(records) - len(kept)} records of other settings left out", file=sys.stderr)
    return kept


def decomposition(paired: list[dict[str, Any]], unpaired: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Standard deviations (in % of log latency) of the components a design choice turns on."""
    out: dict[str, float] = {}
    if unpaired.get("A"):
        medians = np.log([np.median(p["samples"]) for p in unpaired["A"]])
        within = [np.std(np.log(p["samples"]), ddof=1) * 1.2533 / np.sqrt(len(p["samples"])) for p in unpaired["A"]]
        total = float(np.var(medians, ddof=1))
        sampling = float(np.mean(np.square(within)))
        out["unpaired: per-process median, total"] = 100 * np.sqrt(total)
        out["unpaired: within a process (sampling error of its median)"] = 100 * np.sqrt(sampling)
        out["unpaired: between processes"] = 100 * np.sqrt(max(0.0, total - sampling))
    if paired:
        ratios = np.array([p["log_ratio"] for p in paired])
        first = np.array([p["a_first"] for p in paired])
        halves = [p["split_half_gap"] for p in paired if "split_half_gap" in p]
        sampling = (
            float(np.mean(np.square(halves)) / 4)
            if halves
            else float(
                np.mean([p["round_sd"] ** 2 * (np.pi / 2) / p["rounds"] for p in paired])  # of a median, if independent
            )
        )
        order = float(ratios[first].mean() - ratios[~first].mean()) if first.any() and (~first).any() else 0.0
        adjusted = ratios - np.where(first, order / 2, -order / 2)
        arm_medians = [p["log_median_a"] for p in paired]
        out["paired A/A: one arm's per-process median, total"] = 100 * float(np.std(arm_medians, ddof=1))
        out["paired A/A: per-process log-ratio, total"] = 100 * float(np.std(ratios, ddof=1))
        out["paired A/A: creation-order effect (A first minus B first)"] = 100 * order
        out["paired A/A: per-process log-ratio, order removed"] = 100 * float(np.std(adjusted, ddof=2))
        source = f"split-half, {len(halves)} processes" if halves else "from the round spread"
        out[f"paired A/A: within a process (sampling error of the log-ratio; {source})"] = 100 * np.sqrt(sampling)
        out["paired A/A: between two sessions of one process"] = 100 * np.sqrt(
            max(0.0, float(np.var(adjusted, ddof=2)) - sampling)
        )
    return out


def _print_paired(rows: list[dict[str, Any]]) -> None:
    header = ("load", "threshold", "arm", "processes", "trials", "flagged", "rate", "median n", "max trial s")
    print("\n{:>9} {:>9} {:>5} {:>9} {:>6} {:>7} {:>6} {:>8} {:>11}  mean ratio, verdicts".format(*header))
    for row in rows:
        load = "neighbour" if row["neighbour"] else "quiet"
        if not row["trials"]:
            print(f"{load:>9} {row['threshold']:>9.2%} {row['arm']:>5} {row['processes']:>9}      0  (no trial ended)")
            continue
        print(
            f"{load:>9} {row['threshold']:>9.2%} {row['arm']:>5} {row['processes']:>9} {row['trials']:>6} "
            f"{row['flagged']:>7} {row['rate']:>6.1%} {row['median_processes']:>8.0f} {row['max_trial_wall_s']:>11.1f}"
            f"  {row['mean_ratio']:.4f}, {row['verdicts']}"
        )


def _print_unpaired(rows: list[dict[str, Any]]) -> None:
    header = ("threshold", "n/side", "arm", "trials", "flagged", "rate", "max trial s")
    print("\n{:>9} {:>6} {:>5} {:>6} {:>7} {:>6} {:>11}  verdicts".format(*header))
    for row in rows:
        print(
            f"{row['threshold']:>9.0%} {row['processes_per_side']:>6} {row['arm']:>5} {row['trials']:>6} "
            f"{row['flagged']:>7} {row['rate']:>6.1%} {row['max_trial_wall_s']:>11.1f}  {row['verdicts']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v3_small", help="zoo model of the pools")
    parser.add_argument(
        "--paired-processes", default="300,150,100,100", help="paired processes for A/A, +2%%, +5%%, +10%%"
    )
    parser.add_argument("--arm-s", type=float, default=1.0, help="sampling seconds per arm in a paired process")
    parser.add_argument("--min-block-ms", type=float, default=1.0, help="a paired block lasts at least this long")
    parser.add_argument("--trial-s", type=float, default=60.0, help="wall-clock cap of one paired trial")
    parser.add_argument("--paired-thresholds", default="0.01", help="paired thresholds to evaluate")
    parser.add_argument("--neighbour", action="store_true", help="run a CPU-bound neighbour during the pools")
    parser.add_argument(
        "--pool", type=Path, default=None, help="JSON-lines file: earlier paired processes are read, new ones appended"
    )
    parser.add_argument("--pool-s", type=float, default=None, help="stop adding paired processes after this long")
    parser.add_argument("--unpaired-processes", type=int, default=48, help="unpaired processes per arm (0: skip)")
    parser.add_argument("--budget", type=float, default=0.25, help="sampling seconds per unpaired process")
    parser.add_argument("--trial-sizes", default="8", help="unpaired: processes per side in a trial")
    parser.add_argument("--thresholds", default="0.02", help="unpaired thresholds to evaluate")
    parser.add_argument("--overhead-processes", type=int, default=0, help="(a): processes per model (0: skip)")
    parser.add_argument("--seed", type=int, default=None, help="seeds the pools (default: from the clock)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    os.environ.update(environment())  # the slowed backend, in this process and the workers it spawns
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    settings = {
        "model": args.model,
        "arm_s": args.arm_s,
        "min_block_ms": args.min_block_ms,
        "neighbour": args.neighbour,
        "segment": f"{socket.gethostname()}-{time.strftime('%Y%m%dT%H%M%S')}-{seed}",
    }
    pool = read_pool(args.pool, settings) if args.pool else []
    until = time.monotonic() + (args.pool_s if args.pool_s is not None else math.inf)

    report: dict[str, Any] = {"settings": vars(args) | {"json": str(args.json), "pool": str(args.pool), "seed": seed}}
    neighbour = None
    if args.neighbour:
        import multiprocessing as mp

        neighbour = mp.get_context("spawn").Process(target=neighbour_load, args=(time.time() + 86_400,), daemon=True)
        neighbour.start()
    sizes = dict(zip(EFFECTS, (int(n) for n in args.paired_processes.split(",")), strict=True))
    unpaired: dict[str, list[dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory() as directory:
            if args.overhead_processes:
                overhead = {}
                for model in ("digits_cnn", "vit_small"):
                    artifact = export(model, Path(directory))
                    overhead[model] = measure_overhead(artifact, args.overhead_processes)
                    print(
                        f"(a) {model}: harness/bare median ratio {overhead[model]['median_ratio']:.4f} "
                        f"(range {overhead[model]['min']:.4f}-{overhead[model]['max']:.4f}, "
                        f"{overhead[model]['n']} processes)",
                        flush=True,
                    )
                report["overhead"] = overhead
            artifact = export(args.model, Path(directory))
            started = time.perf_counter()
            pool += build_paired_pool(artifact, settings, sizes, until, seed, PoolFile(args.pool))
            report["paired_pool_wall_s"] = time.perf_counter() - started
            if args.unpaired_processes:
                started = time.perf_counter()
                unpaired = build_pool(artifact, args.unpaired_processes, args.budget, seed)
                report["unpaired_pool_wall_s"] = time.perf_counter() - started
    finally:
        if neighbour is not None:
            neighbour.kill()
    thresholds = [float(t) for t in args.paired_thresholds.split(",")]
    report["paired"] = paired_rows(pool, thresholds, args.trial_s)
    report["decomposition"] = decomposition([r for r in pool if r["effect"] == "A/A" and not r["neighbour"]], unpaired)
    segments = len({r["segment"] for r in pool})
    print(
        f"\n(b) paired: {len(pool)} processes of {args.model} (ONNX Runtime CPU, 1 thread) in {segments} segment(s), "
        f"{args.arm_s} s per arm; this invocation added {report['paired_pool_wall_s']:.0f} s "
        f"({'with' if args.neighbour else 'without'} a CPU-bound neighbour); trials capped at {args.trial_s:.0f} s"
    )
    _print_paired(report["paired"])
    if unpaired:
        report["unpaired"] = [
            row
            for size in (int(s) for s in args.trial_sizes.split(","))
            for row in trials(unpaired, size, [float(t) for t in args.thresholds.split(",")])
        ]
        print(f"\n(c) unpaired, for contrast: {args.unpaired_processes} processes per arm, {args.budget} s each")
        _print_unpaired(report["unpaired"])
    print("\n(d) standard deviation of log latency, %:")
    for name, value in report["decomposition"].items():
        print(f"  {name:<84} {value:6.2f}")
    if args.json:
        args.json.write_text(json.dumps(report | {"paired_pool": pool}, indent=1))


if __name__ == "__main__":
    main()
