"""Validation study of the measurement method: overhead, false alarms and power, measured here.

    python tools/validate_measurement.py [--processes 400] [--trial-sizes 4,6,8] [--json out.json]

(a) Overhead: in each of several fresh processes, blocks of the harness's own sampling loop alternate
    with blocks of a bare `perf_counter_ns` loop over the same session and inputs; the ratio of their
    medians, per process, for a sub-millisecond model and a ~5 ms model.
(b) A/A false alarms and (c) power: one pool of interleaved worker processes (round r runs process r
    of every arm, in a seeded random order), arms A and A' (the same artifact) and A slowed by 2, 5 and
    10 % (a wrapper that busy-waits that fraction of each real call's duration). Trials are disjoint
    consecutive chunks of n processes per side, compared with the product's comparison core
    (`harness.stats.compare_latency`); a trial's wall time is that of its processes, start-up included.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.isolation import run_isolated
from harness.stats import compare_latency

SLOWDOWNS = {"A": 0.0, "A'": 0.0, "+2%": 0.02, "+5%": 0.05, "+10%": 0.10}


def _session(artifact: str) -> tuple[Any, Callable[[], Any], Callable[[], None]]:
    from harness.backends.base import LoadRequest
    from harness.backends.onnxruntime import OnnxRuntimeBackend

    session = OnnxRuntimeBackend().load(LoadRequest(artifact, "cpu", 1, ""))
    inputs = [np.asarray(x) for x in np.load(artifact + ".inputs.npz").values()]
    return session, session.runner(inputs), session.sync


def slowed(call: Callable[[], Any], fraction: float) -> Callable[[], Any]:
    """The real call, then a busy-wait of `fraction` of the time it took: a calibrated, proportional slowdown."""
    if fraction == 0:
        return call

    def wrapped() -> Any:
        started = time.perf_counter_ns()
        out = call()
        until = started + int((time.perf_counter_ns() - started) * (1 + fraction))
        while time.perf_counter_ns() < until:
            pass
        return out

    return wrapped


def overhead_worker(artifact: str, blocks: int, block_s: float, send: Callable[[dict], None]) -> None:
    from harness.worker import calibrate, sample

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
    from harness.worker import sample

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
    info = build_artifact(
        loaded, fingerprint_model(loaded), VARIANTS["onnx-fp32"], ConversionContext(), ArtifactCache()
    )
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
    from harness.worker import calibrate

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=400, help="processes per arm in the pool")
    parser.add_argument("--budget", type=float, default=0.25, help="sampling seconds per pool process")
    parser.add_argument("--model", default="mobilenet_v3_small", help="zoo model of the pool")
    parser.add_argument("--trial-sizes", default="4,6,8", help="processes per side in a trial")
    parser.add_argument("--thresholds", default="0.01,0.02", help="comparison thresholds to evaluate")
    parser.add_argument("--overhead-processes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()

    report: dict[str, Any] = {"settings": vars(args) | {"json": str(args.json)}}
    with tempfile.TemporaryDirectory() as directory:
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
        pool = build_pool(artifact, args.processes, args.budget, args.seed)
        report["pool_wall_s"] = time.perf_counter() - started
        medians = {arm: [float(np.median(p["samples"])) for p in runs] for arm, runs in pool.items()}
        report["pool_process_median_cv"] = {arm: float(np.std(m) / np.mean(m)) for arm, m in medians.items()}
        report["pool_mean_ratio"] = {arm: float(np.median(m) / np.median(medians["A"])) for arm, m in medians.items()}
    report["trials"] = [
        row
        for size in (int(s) for s in args.trial_sizes.split(","))
        for row in trials(pool, size, [float(t) for t in args.thresholds.split(",")])
    ]
    print(
        f"\npool: {args.processes} processes x {len(SLOWDOWNS)} arms of {args.model} (ONNX Runtime CPU, 1 thread), "
        f"{report['pool_wall_s']:.0f} s; process-median CV of arm A {report['pool_process_median_cv']['A']:.1%}; "
        f"median ratio to A: " + ", ".join(f"{a} {r:.3f}" for a, r in report["pool_mean_ratio"].items())
    )
    header = ("threshold", "n/side", "arm", "trials", "flagged", "rate", "max trial s")
    print("\n{:>9} {:>6} {:>5} {:>6} {:>7} {:>6} {:>11}  verdicts".format(*header))
    for row in report["trials"]:
        print(
            f"{row['threshold']:>9.0%} {row['processes_per_side']:>6} {row['arm']:>5} {row['trials']:>6} "
            f"{row['flagged']:>7} {row['rate']:>6.1%} {row['max_trial_wall_s']:>11.1f}  {row['verdicts']}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
