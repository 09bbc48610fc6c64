"""How often the paired CI gate gets it right, end to end: `bench run ci --baseline` again and again.

    python tools/gate_repeat.py [--runs 20] [--slowdown 0.05] [-m mobilenet_v3_small] [-v onnx-fp32]

One baseline run (`bench run ci -m M -v V --json base.json`), then `--runs` runs against it of a build
made `--slowdown` slower (`tools/slowed_backend.py`: the current build's artifacts staged as copies that
busy-wait that fraction of every call; ONNX Runtime variants) and `--runs` of the unchanged build, in a
seeded random order, each a fresh `bench` process exactly as CI calls it. Prints every run's exit code,
paired verdict, ratio, interval, processes and wall time, then how many slower runs exited 1 and how
many unchanged runs exited 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profiles.catalog import VARIANTS
from tools.slowed_backend import SLOWER_BUILDS, environment

ONNX_VARIANTS = [name for name, variant in VARIANTS.items() if variant.format == "onnx"]  # what the slower build runs


def bench_run(args: list[str], env: dict[str, str], out: Path) -> tuple[int, float, dict[str, Any] | None, str]:
    """Exit code, wall seconds, the run's one result (None when it wrote none), and the last output line."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "ci", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=900,
    )
    wall = time.perf_counter() - started
    results = json.loads(out.read_text())["results"] if out.exists() else []
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, wall, results[0] if results else None, tail[-1] if tail else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs of each build")
    parser.add_argument(
        "--slowdown", type=float, default=0.05, choices=SLOWER_BUILDS, help="the slower build's slowdown (a fraction)"
    )
    parser.add_argument("-m", "--model", default="mobilenet_v3_small")
    parser.add_argument("-v", "--variant", default="onnx-fp32", choices=ONNX_VARIANTS)
    parser.add_argument("--seed", type=int, default=None, help="seeds the order of the runs (default: the clock)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    case = ["-m", args.model, "-v", args.variant]
    with tempfile.TemporaryDirectory(prefix="gate-repeat-") as work:
        base = Path(work) / "base.json"
        code, wall, _, tail = bench_run(case, {}, base)
        if code != 0:
            raise SystemExit(f"the baseline run exited {code}: {tail}")
        print(f"baseline: {args.model} {args.variant}, {wall:.0f} s; seed {seed}", flush=True)
        order = ["slower"] * args.runs + ["same"] * args.runs
        np.random.default_rng(seed).shuffle(order)
        exits: dict[str, list[int]] = {"slower": [], "same": []}
        print(f"{'#':>3} {'build':>6} {'exit':>4} {'verdict':>12} {'ratio':>7} {'95% CI':>17} {'n':>3} {'wall s':>6}")
        for index, build in enumerate(order, start=1):
            env = environment(args.slowdown) if build == "slower" else {}
            out = Path(work) / f"run-{index}.json"
            code, wall, result, tail = bench_run([*case, "--baseline", str(base)], env, out)
            exits[build].append(code)
            paired = (result or {}).get("against_baseline") or {}
            ci = paired.get("ci95") or []
            interval = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "-"
            ratio = f"{paired['ratio']:.4f}" if paired.get("ratio") else "-"
            verdict = paired.get("verdict", tail[:40])
            processes = len(paired.get("processes", []))
            row = f"{index:>3} {build:>6} {code:>4} {verdict:>12} {ratio:>7} {interval:>17} {processes:>3} {wall:>6.0f}"
            print(row, flush=True)
    slower_flagged = sum(code == 1 for code in exits["slower"])
    same_passed = sum(code == 0 for code in exits["same"])
    print(
        f"\n{args.slowdown:.0%} slower build: exit 1 in {slower_flagged} of {args.runs} runs; "
        f"unchanged build: exit 0 in {same_passed} of {args.runs} runs"
    )


if __name__ == "__main__":
    main()
