"""`RayExecutor`: each `Job` is one Ray task, run by `run_isolated` on the node the scheduler picks.

The task is a Ray worker used once (`max_calls=1`) and never retried (`max_retries=0`: a measurement
that died is a failure to report, not one to repeat somewhere else). Inside it the job runs exactly as
`LocalExecutor` runs it here, in a fresh process of its own under `run_isolated`, so the isolation, the
timeouts, the process group and the worker's log hold on every node. The task is a Ray generator: it
yields its node's id first (the driver then knows where the job is, and can name the node if it dies),
then each message as the worker sends it (relayed to `on_message` as it arrives), then the outcome.

Where a job runs is what it asks for (`job_resources`): a measuring job (an unpaired case process, a
paired process) its device's resource (`bench-cpu`, `bench-gpu`, `bench-ane`) and the node's one
`bench-measure` slot, so a node runs at most one measurement at a time, the machine to itself; a
preparation, a staging or a diagnosis asks for neither and runs beside one (a CPU of the node's).

Paths are the driver's: the run's work directory, the artifacts and the logs must be readable at the
same paths on every node (one host, or a shared mount). A job whose device every node that had it has
left fails with that reason instead of waiting for a node that will not come back.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from harness.orchestrate.cluster.node import MEASURE, backend_reasons, device_resource, host_port, import_ray
from harness.process.executor import Job
from harness.process.isolation import WorkerOutcome, run_isolated
from harness.process.scratch import INDUCTOR_CACHE, ORT_TELEMETRY
from profiles.errors import ConfigError, first_line

POLL_S = 0.5  # how often a waiting job looks at its cancel event
PLACEABLE_CHECK_S = 2.0  # how often a job not yet started asks whether a node can still take it
PASSED_PREFIX = "ONDEVICE_BENCH_"  # the driver's variables a job's worker reads (cache, backends)
_END = object()  # the on-node queue's last item


def job_resources(job: Job) -> dict[str, float]:
    """What a job asks of a node: a measuring job its device and the measuring slot, any other nothing."""
    if not job.measuring or job.device is None:
        return {}
    return {device_resource(job.device): 1.0, MEASURE: 1.0}


def passed_environment() -> dict[str, str]:
    """The driver's variables a job's worker must see as a local worker would (the cache, the backends
    list, the run's scratch variables of `harness.process.scratch`); a node keeps the rest of its own."""
    wanted = (INDUCTOR_CACHE, ORT_TELEMETRY)
    return {name: value for name, value in os.environ.items() if name.startswith(PASSED_PREFIX) or name in wanted}


def _on_node(job: Job, environment: dict[str, str]) -> Iterator[Any]:
    """The task: its node's id, each message of the job's worker, then the worker's outcome.

    The Ray worker's `__main__` is Ray's worker script, and a spawned child imports its parent's main
    script again: Ray and all, seconds and memory a local worker never pays (and a measuring worker's
    memory figures would carry). Without its `__file__`, multiprocessing leaves it out; the Ray worker
    runs this one task and exits (`max_calls=1`)."""
    import ray

    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is None:
        main.__dict__.pop("__file__", None)
    os.environ.update(environment)
    yield ray.get_runtime_context().get_node_id()
    messages: queue.SimpleQueue[Any] = queue.SimpleQueue()
    finished: list[WorkerOutcome] = []

    def work() -> None:
        try:
            finished.append(
                run_isolated(
                    job.target,
                    job.args,
                    job.timeout_s,
                    messages.put,
                    job.log_path,
                    job.per_message,
                    None,
                    job.exit_at_once,
                    job.preload,
                )
            )
        finally:
            messages.put(_END)

    thread = threading.Thread(target=work, name="bench-job")
    thread.start()
    while (message := messages.get()) is not _END:
        yield message
    thread.join()
    yield finished[0] if finished else WorkerOutcome(failure="the node could not start the worker")


def check_address(address: str) -> str:
    """`ray://HOST:PORT` (Ray Client), `HOST:PORT` (the head's GCS) or `auto` (a cluster this host runs)."""
    if address != "auto" and not host_port(address.removeprefix("ray://")):
        raise ConfigError(f"--cluster {address!r}: expected ray://HOST:PORT, HOST:PORT or auto")
    return address


class RayExecutor:
    """Each job in a Ray task on a node that has what it asks for (`job_resources`)."""

    def __init__(self, address: str) -> None:
        """Connects to the cluster at `address` (`check_address`); `ConfigError` without Ray or a cluster."""
        check_address(address)
        self.ray = import_ray()
        try:
            self.ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            reason = first_line(exc)
            raise ConfigError(f"--cluster {address}: cannot connect to a Ray cluster there: {reason}") from None
        self.address = address
        self.task = self.ray.remote(max_calls=1, max_retries=0)(_on_node)  # `.options` refuses max_calls
        self.ask = self.ray.remote(max_calls=1, max_retries=0)(backend_reasons)
        self.names: dict[str, str] = {}
        self.answers: dict[str, dict[str, dict[str, str | None]]] = {}  # node id: its backends' reasons
        self.lock = threading.Lock()

    def alive_nodes(self) -> list[dict[str, Any]]:
        return [node for node in self.ray.nodes() if node.get("Alive")]

    def node_name(self, node_id: str) -> str:
        """A node as results name it: its address and the start of its id (several nodes may share a host)."""
        with self.lock:
            if node_id not in self.names:
                for node in self.ray.nodes():
                    self.names[node["NodeID"]] = f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})"
            return self.names.get(node_id, node_id[:8])

    def _answers(self, nodes: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, str | None]]]:
        """Each node's `backend_reasons`, asked once per node in a task pinned to it (no measuring slot)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        with self.lock:
            asked = [node["NodeID"] for node in nodes if node["NodeID"] not in self.answers]
            refs = [
                self.ask.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
                for node_id in asked
            ]
            self.answers.update(zip(asked, self.ray.get(refs), strict=True))
            return self.answers

    def start_templates(self, preloads: Iterable[tuple[str, ...]]) -> None:
        """Nothing to start from the driver: each task is a process of its own on a node (`max_calls=1`), which
        starts its job's template there."""

    def device_reason(self, backend: str, device: str, on_this_host: Callable[[], str | None]) -> str | None:
        """A case's device is the cluster's when a live node advertises it and that node's backend runs it
        (its own answer, `backend_reasons`): the plan skips the rest with the reason, naming each node's."""
        resource = device_resource(device)
        nodes = [node for node in self.alive_nodes() if node["Resources"].get(resource, 0) >= 1]
        if not nodes:
            return f"no node of the cluster at {self.address} advertises {resource}"
        answers = self._answers(nodes)
        refusals = []
        for node in nodes:
            reason = answers[node["NodeID"]].get(backend, {}).get(device, f"no backend {backend} there")
            if reason is None:
                return None
            refusals.append(f"{self.node_name(node['NodeID'])}: {reason}")
        return f"no node of the cluster runs {backend} on {device} ({'; '.join(refusals)})"

    def _unplaceable(self, resources: dict[str, float]) -> str | None:
        """Why no live node can take a job asking for `resources` (None: one can, now or once free)."""
        for node in self.alive_nodes():
            if all(node["Resources"].get(name, 0) >= amount for name, amount in resources.items()):
                return None
        return f"no live node of the cluster has {' and '.join(sorted(resources))} (a node that had it left)"

    def run(
        self, job: Job, on_message: Callable[[Any], None] | None = None, cancel: threading.Event | None = None
    ) -> WorkerOutcome:
        ray = self.ray
        resources = job_resources(job)
        stream = self.task.options(resources=resources).remote(job, passed_environment())
        started = time.time()
        node: str | None = None
        outcome: WorkerOutcome | None = None
        check_at = time.monotonic() + PLACEABLE_CHECK_S

        def ended(failure: str) -> WorkerOutcome:
            return WorkerOutcome(failure=failure, spawned_at=started, ended_at=time.time(), node=node)

        try:
            while True:
                if cancel is not None and cancel.is_set():
                    ray.cancel(stream, force=True)
                    return ended("cancelled")
                ready, _ = ray.wait([stream], timeout=POLL_S)
                if not ready:
                    if stream.is_finished():
                        break
                    if node is None and time.monotonic() >= check_at:
                        reason = self._unplaceable(resources)
                        if reason is not None:
                            ray.cancel(stream, force=True)
                            return ended(reason)
                        check_at = time.monotonic() + PLACEABLE_CHECK_S
                    continue
                try:
                    item = ray.get(next(stream))
                except StopIteration:
                    break
                if node is None:
                    node = self.node_name(item)
                elif isinstance(item, WorkerOutcome):
                    outcome = item
                elif on_message is not None:
                    on_message(item)
        except ray.exceptions.RayError as exc:
            return ended(self._lost(exc, node))
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (the command line's): the task does not outlive the run
            ray.cancel(stream, force=True)
            raise
        if outcome is None:
            return ended("the task ended without the worker's outcome")
        outcome.node = node
        return outcome

    def _lost(self, exc: Exception, node: str | None) -> str:
        """The reason for a task Ray could not finish: the node or its worker gone, or a cancellation."""
        errors = self.ray.exceptions
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = f"node {node}" if node else "a node"
        if isinstance(exc, errors.TaskCancelledError):
            return "cancelled"
        if isinstance(exc, errors.WorkerCrashedError):
            return f"{where}: its Ray worker died while running the job: {detail}"
        if isinstance(exc, errors.NodeDiedError | errors.LocalRayletDiedError | errors.ObjectLostError):
            return f"{where} lost: {detail}"
        return f"{where}: the Ray task failed: {type(exc).__name__}: {detail}"
