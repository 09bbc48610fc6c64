"""Run a function in a fresh (spawned) process: a crash, a hang or an exception there is one failure here.

The child sends messages over a pipe; the parent relays them as they arrive, kills the child at the
deadline, and turns an abnormal end into a reason a person can act on.

A child never outlives its parent: on Linux the kernel kills it when the parent dies
(`PR_SET_PDEATHSIG`), elsewhere a watchdog thread ends it once its parent is gone. A child starts with
SIGINT ignored (the disposition survives exec), so a Ctrl-C to the process group reaches only the
parent, which then kills its child; no half-started worker prints a traceback on the user's terminal.

A child leads a process group of its own, and when it ends the parent kills that whole group: whatever
the child started (a user's factory that runs `sleep 150`, a runtime's helper) ends with it, instead of
being orphaned and outliving the case.

Paired processes start from a template (`preload`): on Linux, multiprocessing's forkserver, which
imports the runtimes once and forks a fresh child per paired process, so a process that times
milliseconds no longer pays seconds of imports (torch, ONNX Runtime and ExecuTorch's extension). The
unpaired processes, whose memory figures a fork would change, spawn afresh (`harness.process.template`).
Every child is still a process of its own that dies with its case. What a fork would share is set in
the child: its environment is the parent's at the call (the template's is the one it started with),
and each runtime's thread count is set through the runtime's own call (`torch.set_num_threads`, ONNX
Runtime's session options, ExecuTorch's thread pool reset), since the variables read at import were
read in the template. The template is not used on macOS: Core ML and Metal are not fork-safe, so the
Mac path spawns every child afresh, as before (`template_start_method`).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import forkserver, resource_tracker
from pathlib import Path
from typing import Any, TypeVar

from harness.process.messages import Ready, WorkerError

T = TypeVar("T")
# What the template imports before it forks a child (`preload`): one module, which imports the runtimes
# and the backends; named, not imported, so the parent never pays for it.
TEMPLATE = ("harness.process.template",)
PR_SET_PDEATHSIG = 1
WATCHDOG_INTERVAL_S = 0.5


@dataclass
class WorkerOutcome:
    messages: list[Any] = field(default_factory=list)
    failure: str | None = None  # None when the child finished normally
    spawned_at: float = 0.0  # wall-clock times: the parent's start of the child, the child's `Ready`, the end
    ready_at: float | None = None
    ended_at: float = 0.0
    node: str | None = None  # the machine it ran on, where an executor runs jobs on several (None: this host)

    @property
    def wall_s(self) -> float:
        return self.ended_at - self.spawned_at

    def first(self, kind: type[T]) -> T | None:
        """The first message of a type, or None."""
        return next((m for m in self.messages if isinstance(m, kind)), None)


def template_start_method() -> str:
    """`forkserver` where a forked child of a process that imported the runtimes is safe (Linux), else
    `spawn`: on macOS, Core ML, Metal and the Objective-C runtime must not be initialised before a fork."""
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def _template(preload: tuple[str, ...]) -> Any:
    """The forkserver context with `preload` imported in the server. One server per parent process and
    one preload list: a second list stops the first server, which the next start replaces."""
    global _preloaded
    context = mp.get_context("forkserver")
    if _preloaded != preload:
        if _preloaded is not None:
            forkserver._forkserver._stop()
        context.set_forkserver_preload(list(preload))
        _preloaded = preload
    return context


_preloaded: tuple[str, ...] | None = None


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # the parent died before the request took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCHDOG_INTERVAL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _child(
    target: Callable[..., None],
    args: tuple[Any, ...],
    conn: Any,
    log_path: str | None,
    parent_pid: int,
    exit_at_once: bool,
    environment: dict[str, str] | None = None,
) -> None:
    os.setpgid(0, 0)
    if environment is not None:  # forked from the template: the parent's environment now, not the template's
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.environ.clear()
        os.environ.update(environment)
        tempfile.tempdir = None
        parent_pid = os.getppid()  # the template: it ends when the parent does, and this child with it
    _die_with_parent(parent_pid)
    if log_path:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
    try:
        conn.send(Ready(time.time()))
        target(*args, conn.send)
    except BaseException as exc:
        traceback.print_exc()
        sys.stderr.flush()
        conn.send(WorkerError(f"{type(exc).__name__}: {exc}".strip().splitlines()[0]))
    finally:
        conn.close()
    if exit_at_once:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _start_without_sigint(process: Any) -> None:
    """Start the child with SIGINT ignored. Only the main thread may change signal handlers; another
    thread blocks SIGINT while it starts the child instead (the mask, too, survives fork and exec)."""
    if threading.current_thread() is not threading.main_thread():
        # the first spawn of a process starts multiprocessing's resource tracker, which unblocks SIGINT
        # in the calling thread after starting it: start it first
        resource_tracker.ensure_running()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process.start()
    finally:
        signal.signal(signal.SIGINT, previous)


def _last_log_line(log_path: str | None) -> str:
    if not log_path or not Path(log_path).exists():
        return ""
    lines = [ln.strip() for ln in Path(log_path).read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _kill_group(pid: int | None) -> None:
    """SIGKILL to the child's process group (its id is the child's pid: `_child` leads one), so nothing it
    started outlives it; nothing to do when the group is gone already."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def run_isolated(
    target: Callable[..., None],
    args: tuple[Any, ...],
    timeout_s: float,
    on_message: Callable[[Any], None] | None = None,
    log_path: Path | None = None,
    per_message: bool = False,
    cancel: threading.Event | None = None,
    exit_at_once: bool = False,
    preload: tuple[str, ...] | None = None,
) -> WorkerOutcome:
    """Call ``target(*args, send)`` in a spawned process; `send` takes picklable messages (the records of
    `harness.process.messages`).

    A `WorkerError` is sent for an exception; the outcome's `failure` says why the child ended
    abnormally (exception, exit code or signal, the timeout, or `cancel` being set), else None. With
    `per_message` the timeout runs from the child's last message, not from its start: a worker that
    reports each step (one conversion after another) gets `timeout_s` per step. With `exit_at_once` the
    child ends as soon as `target` returns, without Python's finalisation: for a measuring worker, which
    writes no files and holds nothing the OS does not release, finalising torch, ONNX Runtime and
    ExecuTorch is time in which the next process cannot start (`docs/performance.md`).
    With `preload` (module names) the child is forked from the template that imported them, where the
    platform allows (`template_start_method`).
    """
    forked = preload is not None and template_start_method() == "forkserver"
    context = _template(preload) if forked and preload is not None else mp.get_context("spawn")
    parent_conn, child_conn = context.Pipe(duplex=False)
    log = str(log_path) if log_path else None
    environment = dict(os.environ) if forked else None
    process = context.Process(
        target=_child, args=(target, args, child_conn, log, os.getpid(), exit_at_once, environment), daemon=True
    )
    outcome = WorkerOutcome(spawned_at=time.time())
    _start_without_sigint(process)
    child_conn.close()
    deadline = time.monotonic() + timeout_s

    def receive(message: Any) -> None:
        nonlocal deadline
        if isinstance(message, Ready):
            outcome.ready_at = message.at
            return
        if per_message:
            deadline = time.monotonic() + timeout_s
        if isinstance(message, WorkerError):
            outcome.failure = message.error
        outcome.messages.append(message)
        if on_message:
            on_message(message)

    try:
        while True:
            if cancel is not None and cancel.is_set():
                outcome.failure = "cancelled"
                return outcome
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                process.kill()
                process.join()
                outcome.failure = f"timed out after {timeout_s:g} s"
                return outcome
            if parent_conn.poll(min(remaining, 0.5)):
                try:
                    receive(parent_conn.recv())
                except EOFError:
                    break
            elif not process.is_alive():
                while parent_conn.poll():
                    try:
                        receive(parent_conn.recv())
                    except EOFError:
                        break
                break
        finish_by = time.monotonic() + max(1.0, deadline - time.monotonic())
        while process.is_alive() and time.monotonic() < finish_by and not (cancel and cancel.is_set()):
            process.join(timeout=0.5)
        if process.is_alive():
            process.kill()
            process.join()
        if outcome.failure is None and process.exitcode != 0:
            detail = _last_log_line(log)
            outcome.failure = f"worker {describe_exit(process.exitcode)}" + (f" ({detail})" if detail else "")
        return outcome
    finally:
        if process.is_alive():
            process.kill()
            process.join()
        _kill_group(process.pid)
        parent_conn.close()
        outcome.ended_at = time.time()
