from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from harness.process.isolation import run_isolated


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


def _print_and_leave_an_exit_handler(marker: str, send) -> None:
    import atexit

    atexit.register(Path(marker).write_text, "finalised")
    print("measured", flush=False)
    send({"kind": "done"})


def test_exit_at_once_skips_finalisation_but_keeps_messages_and_the_log(tmp_path: Path) -> None:
    """A measuring worker ends without Python's finalisation (an exit handler does not run), yet its
    messages arrive, it counts as a normal end, and what it printed reaches the log."""
    for at_once in (False, True):
        marker, log = tmp_path / f"finalised-{at_once}", tmp_path / f"log-{at_once}"
        outcome = run_isolated(_print_and_leave_an_exit_handler, (str(marker),), 60, log_path=log, exit_at_once=at_once)
        assert outcome.failure is None and [m["kind"] for m in outcome.messages] == ["done"]
        assert marker.exists() is not at_once
        assert log.read_text().strip() == "measured"


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


def _steps(count: int, pause_s: float, send) -> None:
    for step in range(count):
        time.sleep(pause_s)  # a step of work that takes this long
        send({"kind": "step", "step": step})


def test_a_per_message_timeout_runs_from_the_last_message() -> None:
    """A conversion worker reports each variant: each gets the timeout, not the whole model."""
    steady = run_isolated(_steps, (8, 0.5), 3, per_message=True)
    assert steady.failure is None and [m["step"] for m in steady.messages] == list(range(8))
    whole = run_isolated(_steps, (8, 0.5), 3)
    assert whole.failure == "timed out after 3 s" and len(whole.messages) < 8


def _in_thread(target, *args, **kwargs) -> tuple[threading.Thread, dict]:
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(outcome=target(*args, **kwargs)))
    thread.start()
    return thread, box


def _pid_then_hang(send) -> None:
    send({"kind": "pid", "pid": os.getpid()})
    time.sleep(60)


def test_cancel_kills_the_worker_at_once() -> None:
    cancel, started = threading.Event(), threading.Event()
    pids: list[int] = []

    def on_message(message: dict) -> None:
        pids.append(message["pid"])
        started.set()

    def run_then_probe() -> tuple:
        outcome = run_isolated(_pid_then_hang, (), 60, on_message, cancel=cancel)
        try:  # still in the thread that started it (a child also dies with that thread: PR_SET_PDEATHSIG)
            os.kill(pids[0], 0)
            return outcome, True
        except ProcessLookupError:
            return outcome, False

    thread, box = _in_thread(run_then_probe)
    assert started.wait(30)
    cancel.set()
    thread.join(10)
    assert not thread.is_alive()
    outcome, still_running = box["outcome"]
    assert outcome.failure == "cancelled" and not still_running


def _pid_then_done(send) -> None:
    send({"kind": "pid", "pid": os.getpid()})
    time.sleep(1.0)
    send({"kind": "done"})


def test_a_worker_started_from_another_thread_does_not_take_ctrl_c() -> None:
    """Ctrl-C reaches the whole process group; only the parent acts on it (and kills its workers)."""
    pids: list[int] = []
    started = threading.Event()

    def on_message(message: dict) -> None:
        if message["kind"] == "pid":
            pids.append(message["pid"])
            started.set()

    thread, box = _in_thread(run_isolated, _pid_then_done, (), 60, on_message)
    assert started.wait(30)
    os.kill(pids[0], signal.SIGINT)
    thread.join(30)
    assert box["outcome"].failure is None and box["outcome"].messages[-1]["kind"] == "done"
