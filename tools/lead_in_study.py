"""What a lead-in does to a model's vs-reference ratios: the default profile's paired processes (the
reference and every variant this host runs, in one process), alternated with and without
`paired.lead_in_ms`, and each variant's ratio and per-process spread (creation order taken out) for both.

    python tools/lead_in_study.py -m digits_cnn --processes 8

The two settings alternate process by process, so the machine's drift hits both alike. Artifacts come
from the cache (built when missing).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.backends.base import DeviceUnavailable, LoadRequest
from harness.backends.registry import backends, format_backend
from harness.orchestrate.prepare import prepare_isolated
from harness.pairing.sequential import order_adjusted, process_log_ratio
from harness.pairing.series import creation_order
from harness.pairing.worker import Arm, PairedPlan, measure_paired
from harness.process.isolation import run_isolated
from harness.process.messages import PairedMeasured
from harness.process.specs import WorkerSpec
from profiles.catalog import VARIANTS
from profiles.schema import load_profile

REFERENCE = "torch-fp32"


def loadable(specs: dict[str, WorkerSpec], send: Callable[[Any], None]) -> None:
    """The variants this host loads (an ExecuTorch program delegated to Core ML builds here, runs on macOS)."""
    names = []
    for name, spec in specs.items():
        backend = backends()[spec.backend]()
        request = LoadRequest(spec.artifact_path, spec.device, 1, spec.model_ref)
        try:
            backend.prepare(request)
            backend.load(request)
            names.append(name)
        except DeviceUnavailable:
            pass
        finally:
            backend.close()
    send(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="digits_cnn")
    parser.add_argument("--processes", type=int, default=8, help="paired processes per setting")
    parser.add_argument("--lead-in-ms", type=float, default=1.0)
    args = parser.parse_args()
    profile = load_profile("default", {"models": [args.model]}).profile
    runnable = [v for v in VARIANTS if format_backend(VARIANTS[v].format) in ("torch", "onnxruntime", "executorch")]
    with tempfile.TemporaryDirectory() as work:
        prepared = prepare_isolated(
            args.model, runnable, Path(work), profile, Path(work) / "prepare.log", lambda s: print(s, file=sys.stderr)
        )
        built = {v: a.info["path"] for v, a in prepared.artifacts.items() if a.status == "ok"}
        specs = {
            v: WorkerSpec(
                args.model,
                format_backend(VARIANTS[v].format),
                "cpu",
                built.get(v, ""),
                prepared.inputs_path,
                None,
                prepared.task,
                {},
                "",
                profile.measure.warmup,
                0,
                profile.measure.min_sample_ms,
                profile.measure.threads,
                None,
            )
            for v in [REFERENCE, *(v for v in runnable if v in built and v != REFERENCE)]
        }
        probe = run_isolated(loadable, (specs,), profile.measure.timeout_s, None, None)
        if probe.failure is not None or not probe.messages:
            raise SystemExit(f"loading the variants of {args.model}: {probe.failure or 'no answer'}")
        names = probe.messages[0]
        arms = tuple(Arm(specs[v]) for v in names)
        rng = np.random.default_rng(0)
        log_ratios: dict[float, list[list[float]]] = {0.0: [], args.lead_in_ms: []}
        orders: list[tuple[int, ...]] = []
        order: tuple[int, ...] = ()
        for index in range(args.processes):
            order = creation_order(len(arms), index, rng, order)
            orders.append(order)
            for lead_in_ms in log_ratios:
                plan = PairedPlan(
                    arms,
                    profile.paired.arm_s * len(arms),
                    profile.measure.min_sample_ms,
                    profile.measure.warmup,
                    profile.measure.threads,
                    order,
                    int(rng.integers(2**32)),
                    lead_in_ms,
                )
                outcome = run_isolated(measure_paired, (plan,), profile.measure.timeout_s, None, None)
                measured = outcome.first(PairedMeasured)
                if measured is None:
                    raise SystemExit(f"a paired process of {args.model}: {outcome.failure or 'sent no result'}")
                blocks = measured.blocks_ms
                log_ratios[lead_in_ms].append([process_log_ratio(blocks[0], b) for b in blocks[1:]])
            print(f"process pair {index + 1} of {args.processes}", file=sys.stderr)
    print(f"{args.model}: each variant against {REFERENCE}, {args.processes} processes per setting")
    print(f"{'variant':20s}" + "".join(f"  lead-in {ms:g} ms: ratio, per-process sd" for ms in log_ratios))
    for position, variant in enumerate(names[1:]):
        a_first = [o.index(0) < o.index(position + 1) for o in orders]
        cells = []
        for per_process in log_ratios.values():
            mean, sd, _ = order_adjusted([row[position] for row in per_process], a_first)
            cells.append(f"{math.exp(mean):>19.3f}x, {sd:>8.2%}")
        print(f"{variant:20s}" + "".join(f"  {cell:>34s}" for cell in cells))


if __name__ == "__main__":
    main()
