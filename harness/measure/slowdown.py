"""A known, proportional slowdown: how the validation study and the gate's tests make a regression."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

SLOWDOWN_VARIABLE = "ONDEVICE_BENCH_TEST_SLOWDOWN"


def slowed(call: Callable[[], Any], fraction: float) -> Callable[[], Any]:
    """The real call, then a busy-wait of `fraction` of the time it took."""
    if fraction <= 0:
        return call

    def wrapped() -> Any:
        started = time.perf_counter_ns()
        out = call()
        until = started + int((time.perf_counter_ns() - started) * (1 + fraction))
        while time.perf_counter_ns() < until:
            pass
        return out

    return wrapped


def requested_slowdown() -> float:
    """The slowdown a test asks of the current build: `ONDEVICE_BENCH_TEST_SLOWDOWN=0.05` makes every
    call of this run's artifacts 5 % slower (a baseline's artifacts keep their speed); 0 when unset."""
    text = os.environ.get(SLOWDOWN_VARIABLE, "")
    try:
        return max(0.0, float(text)) if text else 0.0
    except ValueError:
        return 0.0
