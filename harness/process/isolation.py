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

Every measuring process starts from a template (`preload`): on Linux, a forkserver of multiprocessing's
that imported one runtime once (`harness.process.templates`: one per backend, and one with every
runtime for the paired processes) and forks a fresh child per case, so a process that times
milliseconds no longer pays seconds of imports (torch, ONNX Runtime and ExecuTorch's extension). Each
template holds only what a spawned worker of its runtime would have imported, and its children map its
resident library pages in again, so a forked child's memory figures rest on a spawned one's basis.
Every child is still a process of its own that dies with its case. What a fork would share is set in
the child: its environment is the parent's at the call (the template's is the one it started with),
and each runtime's thread count is set through the runtime's own call (`torch.set_num_threads`, ONNX
Runtime's session options, ExecuTorch's thread pool reset), since the variables read at import were
read in the template. Templates are not used on macOS: Core ML and Metal are not fork-safe, so the
Mac path spawns every child afresh (`template_start_method`).
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing import forkserver, popen_forkserver, reduction, resource_tracker, spawn, util
from multiprocessing.context import ForkServerProcess, set_spawning_popen
from pathlib import Path
from typing import Any, TypeVar

from harness.process.messages import Ready, WorkerError

T = TypeVar("T")
# The paired processes' template (`preload`): a module that imports every runtime and the backends;
# named, not imported, so the parent never pays for it.
PAIRED_TEMPLATE = ("harness.process.templates.paired",)
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


class _TemplatePopen(popen_forkserver.Popen):
    """multiprocessing's forkserver start, from the template of the process's `preload` rather than the
    one server multiprocessing keeps per interpreter: the body of CPython's `Popen._launch` (3.10 to
    3.13) with the server named. The child's side is multiprocessing's own."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        buffer = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buffer)
            reduction.dump(process_obj, buffer)
        finally:
            set_spawning_popen(None)
        self.sentinel, data = _server(process_obj.preload).connect_to_new_process(self._fds)
        parent_copy = os.dup(data)  # the child's sentinel of its parent, as multiprocessing keeps it
        self.finalizer = util.Finalize(self, util.close_fds, (parent_copy, self.sentinel))
        with open(data, "wb", closefd=True) as stream:
            stream.write(buffer.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _TemplateProcess(ForkServerProcess):
    preload: tuple[str, ...] = ()

    @staticmethod
    def _Popen(process_obj: Any) -> Any:  # multiprocessing calls it by this name
        return _TemplatePopen(process_obj)


def _server(preload: tuple[str, ...]) -> forkserver.ForkServer:
    """The template that imported `preload`, started on first use; it lives as long as this process."""
    with _servers_lock:
        server = _servers.get(preload)
        if server is None:
            server = _servers[preload] = forkserver.ForkServer()
            server.set_forkserver_preload(list(preload))
        return server


def start_templates(preloads: Iterable[tuple[str, ...]]) -> None:
    """Start each template now (where templates are used); it imports its runtimes while the caller
    goes on."""
    if template_start_method() == "forkserver":
        for preload in preloads:
            _server(preload).ensure_running()


_servers: dict[tuple[str, ...], forkserver.ForkServer] = {}
_servers_lock = threading.Lock()


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
    parent_conn, child_conn = mp.Pipe(duplex=False)
    log = str(log_path) if log_path else None
    environment = dict(os.environ) if forked else None
    arguments = (target, args, child_conn, log, os.getpid(), exit_at_once, environment)
    if forked and preload is not None:
        process: Any = _TemplateProcess(target=_child, args=arguments, daemon=True)
        process.preload = preload
    else:
        process = mp.get_context("spawn").Process(target=_child, args=arguments, daemon=True)
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
