"""Children forked from the template (the paired processes' start-up path) keep the isolation of a
spawned child: a crash, a hang or memory exhaustion fails only its own call, and the next child starts
clean. The template holds the runtimes but never Core ML, and a child sees the parent's environment as
it is at the call, not as it was when the template started."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from harness.process.isolation import PAIRED_TEMPLATE, run_isolated, template_start_method

pytestmark = pytest.mark.skipif(template_start_method() != "forkserver", reason="the template is Linux's path")


def _case(mode: str, send) -> None:
    """What a measuring child would do, or fail doing."""
    if mode == "segv":
        import ctypes

        ctypes.string_at(0)
    if mode == "hang":
        time.sleep(120)
    if mode == "oom":
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        hoard = [bytearray(256 << 20) for _ in range(64)]  # 16 GiB, far past the 2 GiB limit
        send({"kind": "allocated", "blocks": len(hoard)})
    send(
        {
            "kind": "state",
            "preloaded": sorted(m for m in ("torch", "onnxruntime") if m in sys.modules),
            "coreml": sorted(m for m in sys.modules if m.startswith("coremltools")),
            "marker": os.environ.get("BENCH_TEMPLATE_MARKER"),
            "pid": os.getpid(),
        }
    )


def test_a_crash_a_hang_and_memory_exhaustion_each_fail_only_their_own_child(monkeypatch) -> None:
    first = run_isolated(_case, ("ok",), 120, preload=PAIRED_TEMPLATE)
    assert first.failure is None
    segv = run_isolated(_case, ("segv",), 120, preload=PAIRED_TEMPLATE)
    hang = run_isolated(_case, ("hang",), 3, preload=PAIRED_TEMPLATE)
    oom = run_isolated(_case, ("oom",), 120, preload=PAIRED_TEMPLATE)
    assert segv.failure == "worker was killed by SIGSEGV"
    assert hang.failure == "timed out after 3 s"
    assert oom.failure is not None and oom.failure.startswith("MemoryError")
    monkeypatch.setenv("BENCH_TEMPLATE_MARKER", "set after the template started")
    after = run_isolated(_case, ("ok",), 120, preload=PAIRED_TEMPLATE)
    assert after.failure is None
    (state,) = after.messages
    assert state["preloaded"] == ["onnxruntime", "torch"]  # forked from the template: nothing imported here
    assert state["coreml"] == []
    assert state["marker"] == "set after the template started"
    assert state["pid"] != first.messages[0]["pid"]  # a fresh process per call
    assert after.ready_at is not None and after.spawned_at <= after.ready_at <= after.ended_at


def _memory(template: str, send) -> None:
    """A worker's memory on its way to its load: the template's imports (already done when forked)."""
    import importlib

    importlib.import_module(template)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    send({key: int(status[key].split()[0]) for key in ("VmRSS", "RssFile", "RssAnon")})


@pytest.mark.parametrize("runtime", ["torch_eager", "onnxruntime"])
def test_a_forked_worker_counts_the_memory_a_spawned_one_would(runtime: str) -> None:
    """A fork maps none of the template's library pages into the child until touched: without mapping
    them in again a forked worker's resident memory reads tens of MB lower than a spawned one's, and
    its memory figures would change basis with the start-up path."""
    template = f"harness.process.templates.{runtime}"
    forked = run_isolated(_memory, (template,), 120, preload=(template,)).messages[0]
    spawned = run_isolated(_memory, (template,), 120).messages[0]
    assert 0.9 * spawned["RssFile"] <= forked["RssFile"] <= 1.1 * spawned["RssFile"]
    assert 0.9 * spawned["VmRSS"] <= forked["VmRSS"] <= 1.1 * spawned["VmRSS"]
    assert forked["RssAnon"] <= 1.1 * spawned["RssAnon"]  # the template imported no more than the worker would


def test_each_runtime_template_imports_only_its_own_runtime() -> None:
    state = run_isolated(_case, ("ok",), 120, preload=("harness.process.templates.onnxruntime",)).messages[0]
    assert state["preloaded"] == ["onnxruntime"]
    assert state["coreml"] == []
