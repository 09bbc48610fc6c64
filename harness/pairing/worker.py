"""Paired in-process measurement: several artifacts loaded in one process, their blocks of calls alternated.

What moves one process's speed (memory placement, frequency, the neighbours of a shared VM) moves every
arm of that process alike, so it cancels in their ratio: the per-process log-ratio of two sessions of one
artifact spreads a small fraction of what one arm's per-process median does (the figures are in
`docs/measurement.md`). Pairing is for latency ratios; load time, memory, energy and parity stay with
the unpaired workers of `harness.measure.worker`, one case per process.

The schedule, per process:
- the arms are created in the order the parent gives (the second-created session of two runs a little
  faster than the first, consistently, so the parent mirrors the order from one process to the next,
  and the verdict takes the order effect out: `harness.pairing.sequential`);
- every arm is warmed up the same number of calls, interleaved and each timed, for at most half the
  process's sampling time (the warm-up calls of many slow arms can outlast their sampling). An arm whose
  warm call lasts at least two blocks (`SLOW_CALL_BLOCKS`) runs one call per block, and its interleaved
  timings stand; a faster arm then runs a few calls in a row, timed as a block's calls would be, and
  they set its calls per block, so a block lasts at least `min_block_ms` (far above the timer's
  resolution);
- then rounds until the budget is spent: a seeded random order of the arms followed by its mirror image
  (A B B A, C A B B A C, ...), so within a round every arm sits at the same mean position and a linear
  drift over the round hits all alike. Compared with K arms at once, the reference (arm 0) appears
  about sqrt(K) times in each half-round, never twice in a row (`round_order`), since its noise enters
  every ratio. Every block of every arm is recorded, in time order;
- with a lead-in (`lead_in_ms`), each block is preceded by untimed calls of its arm. Switching from one
  runtime to another leaves the caches and branch predictors cold, and the cost falls on each runtime
  differently and varies from process to process, so it biases the ratio and widens its spread
  (`tools/lead_in_study.py` measures both). An arm whose one call takes `LEAD_IN_SKIP_MS` or more gets
  none: the switch is then a small share of a block, and a lead-in call would double the arm's cost
  without narrowing the spread. The baseline gate pairs two builds of one variant, whose switches cost
  alike, and runs without one, as the validation study did.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.generation.measure import NotPairable, decode_step_call
from harness.measure.loop import MAX_CALLS_PER_SAMPLE, timed_calls
from harness.process.messages import PairedMeasured, PairedRefused
from harness.process.specs import THREAD_VARIABLES, WorkerSpec, npz_arrays

MIN_ROUNDS = 5
CALIBRATION_CALLS = 3  # calls of a fast arm in a row after its warm-up: they set its calls per block
SLOW_CALL_BLOCKS = 2.0  # an arm whose warm call lasts this many blocks needs no calibration (`warm_up`)
LEAD_IN_SKIP_MS = 20.0


@dataclass(frozen=True)
class Arm:
    """One artifact of a paired process."""

    spec: WorkerSpec


@dataclass(frozen=True)
class PairedPlan:
    arms: tuple[Arm, ...]
    budget_s: float  # sampling seconds of the whole process, all arms together
    min_block_ms: float
    warmup: int
    threads: int
    created: tuple[int, ...]  # the order in which the arms are loaded (indices into `arms`)
    seed: int  # the block order of this process
    lead_in_ms: float = 0.0  # untimed calls of an arm before each of its blocks (`lead_in_calls`)
    reference_blocks: int = 1  # blocks of arm 0 (A, the reference) per half-round (`round_order`)


def reference_share(contenders: int) -> int:
    """Blocks of the reference per half-round when it is compared with `contenders` arms at once: its
    noise enters every ratio, so it gets about sqrt(K) times a contender's samples (the allocation that
    minimises the summed variance of K comparisons with a shared control, as in Dunnett's design)."""
    return max(1, round(math.sqrt(contenders)))


def round_order(arms: int, reference_blocks: int, rng: np.random.Generator) -> list[int]:
    """One half-round: every arm once and arm 0 `reference_blocks` times, in a random order in which no
    two of arm 0's blocks are adjacent (the second would run with warm caches)."""
    if reference_blocks > arms:
        raise ValueError(f"{reference_blocks} reference blocks cannot be kept apart by {arms - 1} other arms")
    items = [0] * reference_blocks + list(range(1, arms))
    while True:
        order = [int(i) for i in rng.permutation(items)]
        if all(order[k] or order[k + 1] for k in range(len(order) - 1)):
            return order


def warm_up(
    runners: dict[int, tuple[Callable[[], Any], Callable[[], None]]],
    order: list[int],
    calls: int,
    max_s: float,
    min_block_ms: float,
) -> dict[int, list[float]]:
    """Warm every arm up and time it, per arm in milliseconds per call: rounds of one call of each arm,
    interleaved in `order` and each call timed (at least one round, then until `calls` rounds or `max_s`).
    An arm whose interleaved calls (after its first) took less than `SLOW_CALL_BLOCKS` blocks then runs
    `CALIBRATION_CALLS` calls in a row, timed, and those set its calls per block: an interleaved call
    carries the switch from another runtime, which would overstate a fast arm's call and shorten its
    blocks. A slower arm runs one call per block either way, and its interleaved timings stand: calls in
    a row would spend seconds of a many-armed process confirming them (`docs/measurement.md`)."""
    timed: dict[int, list[float]] = {index: [] for index in order}
    started = time.perf_counter()
    for done in range(max(calls, 1)):
        if done and time.perf_counter() - started >= max_s:
            break
        for index in order:
            timed[index].append(timed_calls(*runners[index], 1))
    for index in order:
        settled = timed[index][1:] or timed[index]
        if float(np.median(settled)) >= SLOW_CALL_BLOCKS * min_block_ms:
            timed[index] = settled
        else:
            timed[index] = [timed_calls(*runners[index], 1) for _ in range(CALIBRATION_CALLS)]
    return timed


def block_calls(timed_ms: list[float], min_block_ms: float) -> int:
    """Calls per block so a block lasts at least `min_block_ms`, from the median of a few timed calls:
    one slow call must not leave a 40-microsecond model with blocks of one call (timer overhead)."""
    per_call = float(np.median(timed_ms))
    return int(min(MAX_CALLS_PER_SAMPLE, max(1, np.ceil(min_block_ms / max(per_call, 1e-6)))))


def lead_in_calls(timed_ms: list[float], lead_in_ms: float) -> int:
    """Untimed calls before each block of an arm: enough to last `lead_in_ms`, none when that is 0 or one
    call takes `LEAD_IN_SKIP_MS` or more."""
    if not lead_in_ms or float(np.median(timed_ms)) >= LEAD_IN_SKIP_MS:
        return 0
    return block_calls(timed_ms, lead_in_ms)


def arm_call(session: Any, spec: WorkerSpec) -> Callable[[], Any]:
    """The call an arm's blocks time: one inference on the case's inputs, or for a generative arm one decode
    step through its own step adapter (`harness.generation.measure.decode_step_call`: the inputs file holds the
    torch reference's cache, which another backend's graph or state does not take)."""
    if spec.task == "generation":
        return decode_step_call(session, spec.parity_path, spec.inputs_path)
    return session.runner(npz_arrays(spec.inputs_path, "arr_"))


def measure_paired(plan: PairedPlan, send: Callable[[Any], None]) -> None:
    if plan.threads > 0:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(plan.threads)
    from harness.backends.base import LoadRequest
    from harness.backends.registry import backends

    rng = np.random.default_rng(plan.seed)
    order = list(plan.created)
    instances: list[Any] = []
    runners: dict[int, tuple[Callable[[], Any], Callable[[], None]]] = {}
    sessions = []
    load_at = 0.0
    try:
        for index in order:
            spec = plan.arms[index].spec
            backend = backends()[spec.backend]()
            instances.append(backend)
            request = LoadRequest(spec.artifact_path, spec.device, plan.threads, spec.model_ref)
            backend.prepare(request)
            load_at = load_at or time.time()
            session = backend.load(request)
            sessions.append(session)
            try:
                call = arm_call(session, spec)
            except NotPairable as exc:
                send(PairedRefused(index, str(exc)))
                return
            runners[index] = (call, session.sync)
        warm_ms = warm_up(runners, order, plan.warmup, plan.budget_s / 2, plan.min_block_ms)
        calls = [block_calls(warm_ms[i], plan.min_block_ms) for i in range(len(plan.arms))]
        lead_in = [lead_in_calls(warm_ms[i], plan.lead_in_ms) for i in range(len(plan.arms))]
        blocks: list[list[float]] = [[] for _ in plan.arms]
        deadline = time.perf_counter() + plan.budget_s
        rounds = 0
        while rounds < MIN_ROUNDS or time.perf_counter() < deadline:
            forward = round_order(len(plan.arms), plan.reference_blocks, rng)
            for index in forward + forward[::-1]:
                for _ in range(lead_in[index]):
                    runners[index][0]()
                blocks[index].append(timed_calls(*runners[index], calls[index]))
            rounds += 1
        send(
            PairedMeasured(
                created=order, calls=calls, blocks_ms=blocks, rounds=rounds, lead_in=lead_in, load_at=load_at
            )
        )
    finally:
        del sessions, runners
        for backend in instances:
            backend.close()
