from __future__ import annotations

import os
import time
from pathlib import Path

from harness.isolation import run_isolated


def _talk_then(mode: str, send) -> None:
    send({"kind": "hello"})
    if mode == "exit":
        os._exit(3)
    if mode == "hang":
        time.sleep(60)
    if mode == "raise":
        raise ValueError("bad input shape")
    if mode == "segv":
        import ctypes

        ctypes.string_at(0)
    send({"kind": "done"})


def test_normal_child_relays_messages_in_order() -> None:
    seen = []
    outcome = run_isolated(_talk_then, ("ok",), 60, seen.append)
    assert outcome.failure is None
    assert [m["kind"] for m in outcome.messages] == ["hello", "done"] == [m["kind"] for m in seen]


def test_exit_code_is_reported_and_messages_kept() -> None:
    outcome = run_isolated(_talk_then, ("exit",), 60)
    assert outcome.failure == "worker exited with code 3"
    assert [m["kind"] for m in outcome.messages] == ["hello"]


def test_hang_is_killed_at_the_deadline() -> None:
    started = time.monotonic()
    outcome = run_isolated(_talk_then, ("hang",), 3)
    assert outcome.failure == "timed out after 3 s"
    assert time.monotonic() - started < 20


def test_exception_becomes_its_first_line(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    outcome = run_isolated(_talk_then, ("raise",), 60, log_path=log)
    assert outcome.failure == "ValueError: bad input shape"
    assert "Traceback" in log.read_text()


def test_segfault_names_the_signal() -> None:
    outcome = run_isolated(_talk_then, ("segv",), 60)
    assert outcome.failure is not None and outcome.failure.startswith("worker was killed by SIGSEGV")
