"""ExecuTorch's runtime on a `.pte`: XNNPACK (or portable kernels) on the CPU, and on macOS the Core ML
delegate with compute units per device.

The runtime is ExecuTorch's C extension (`executorch.extension.pybindings._C`) loaded directly: the
public `executorch.runtime` wrapper imports the whole exporter first, seconds per worker process
(`docs/performance.md`), where the extension itself loads in milliseconds once torch is imported.

Device truth: an XNNPACK program runs only `cpu`. A Core ML program's compute units are a compile spec
baked into the `.pte` (the Python runtime takes no load-time backend options), so a Core ML program is
staged once per device before it is measured (`stage_program`, in the parent's staging worker: the
rewrite imports the exporter): the spec rewritten with the delegate segments kept out of the
flatbuffer as shipped, every Core ML partition's compute plan read, and the partitions' cache
identifiers noted. As for the `coreml` backend, a `gpu` or `ane` case whose compute plan has no op
preferring the device, or whose plan cannot be read, is refused. Nodes left outside the delegate run on
the portable CPU kernels.

Cold load: the Core ML runtime compiles a partition only on a miss of its persistent on-disk cache
(keyed by the partition's export-time identifier plus compute units), so each measuring process
removes those entries before the timed load, and says so; `load_method` also runs one prewarm
prediction, so the first timed inference is not the first (said in the runtime record).

A program is loaded with its delegation info beside it (`delegation.json`): the converter writes it, and
for a program built elsewhere (`bench ab old.pte new.pte`) staging writes one from the program itself
(`program_notes`): its delegate, without node counts, which its placement then says.

A decoder program (`converters.executorch`: the static KV cache as mutable buffers) keeps its cache in the
loaded method's memory between executions. Its session says so (`input_names` from the notes'
`decoder` record, `cache_in_program`, `state_bytes`), and the generation path feeds it tokens and
positions only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from converters.executorch import DELEGATION_FILE, ET_MISSING, import_exir, quiet_stderr
from harness.backends.base import Backend, DeviceUnavailable, LoadRequest, ProbeKit, Session
from harness.backends.probe import converted_probe, probe_model_inputs
from profiles.errors import first_line

COMPUTE_UNITS = {"cpu": "cpu_only", "gpu": "cpu_and_gpu", "ane": "cpu_and_ne", "all": "all"}
COREML = "CoreMLBackend"
CPU_DELEGATES = ("XnnpackBackend",)
PORTABLE = "portable kernels"  # a program with no delegate: ExecuTorch's own CPU kernels run all of it
REQUIRES_MACOS = "requires macOS"
COREML_OPS = "Core ML ops inside the delegate (MLComputePlan); graph nodes outside it in by_delegate"
GRAPH_NODES = "graph nodes"
STAGED_UNITS = "compute_units"  # in staged notes: the compute units the program beside them was written for
CACHE_PRODUCT = "executorchcoreml"  # the runtime's directory under the user's caches (ETCoreMLStrings.productName)
PREWARM = (
    "one prediction ran inside load_method (the delegate's prewarm, on by default): it is in cold_ms, and "
    "first_inference_ms is the first inference after it"
)
ColdLoad = Literal["compiled", "cache hit possible"]
logger = logging.getLogger(__name__)


def unavailable_reason(device: str, system: str, machine: str, has_executorch: bool) -> str | None:
    """Why ExecuTorch cannot run `device` on this host, or None. Pure, so every branch is testable anywhere."""
    if device not in COMPUTE_UNITS:
        return f"executorch has no '{device}' device (cpu, gpu, ane, all)"
    if not has_executorch:
        return ET_MISSING
    if device == "cpu":
        return None
    if device == "ane" and (system != "Darwin" or machine != "arm64"):
        return f"ane runs through ExecuTorch's Core ML delegate, which {REQUIRES_MACOS} on Apple silicon"
    if system != "Darwin":
        return f"{device} runs through ExecuTorch's Core ML delegate, which {REQUIRES_MACOS}"
    return None


def delegate_refusal(delegate: str, device: str, registered: list[str]) -> str | None:
    """Why this runtime must not run a program of this delegate on `device`, or None."""
    if delegate == PORTABLE:
        return None if device == "cpu" else f"a program without a delegate runs on the CPU only, not {device}"
    if delegate not in registered:
        lacks = (
            f"the program delegates to {delegate}, which this ExecuTorch runtime lacks (it has {', '.join(registered)})"
        )
        return f"Core ML delegate {REQUIRES_MACOS}: {lacks}" if delegate == COREML else lacks
    if delegate in CPU_DELEGATES and device != "cpu":
        return f"{delegate} runs on the CPU only; {device} needs the Core ML delegate (et-coreml-fp16, macOS)"
    return None


def delegation_placement(notes: dict[str, Any], plan: dict[str, Any] | None, device: str) -> dict[str, Any]:
    """Where the work went, in two units kept apart. With a readable compute plan, `by_device` counts the
    Core ML ops inside the delegate by preferred device (every partition summed); without one, the
    delegate's graph nodes, under `coreml (requested DEVICE)` for Core ML (the request, not the device)
    or `cpu` for XNNPACK, plus the nodes outside the delegate, which run on the portable CPU kernels.
    `by_delegate` always counts graph nodes: inside the delegate and on the portable kernels (less
    `getitem`, which only unpacks a delegate's outputs)."""
    split = notes["delegation"]
    if split is None:
        return {
            "source": f"the program's delegate ({DELEGATION_FILE} absent: node counts unknown)",
            "by_delegate": {notes["delegate"]: None},
        }
    unpacking = split["by_operator"].get("getitem", {}).get("non_delegated", 0)
    portable = split["non_delegated_nodes"] - unpacking
    by_delegate = {notes["delegate"]: split["delegated_nodes"], PORTABLE: portable}
    planned = (plan or {}).get("by_device")
    if planned is not None:
        return {
            "source": "executorch delegation info + MLComputePlan",
            "by_device": dict(planned),
            "by_device_counts": COREML_OPS,
            "by_delegate": by_delegate,
        }
    label = f"coreml (requested {device})" if notes["delegate"] == COREML else "cpu"
    by_device = {label: split["delegated_nodes"]}
    if portable:
        by_device["cpu"] = by_device.get("cpu", 0) + portable
    return {
        "source": "executorch delegation info",
        "by_device": by_device,
        "by_device_counts": GRAPH_NODES,
        "by_delegate": by_delegate,
    }


def with_compute_units(pte: bytes, units: str) -> bytes:
    """The program with its Core ML delegates' `compute_units` compile spec set to `units`, serialized with
    the delegate data in segments after the flatbuffer, as `to_executorch` ships it (the serializer's
    default inlines it, and the runtime never frees inline delegate data)."""
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    pte_file = deserialize_pte_binary(pte)
    for plan in pte_file.program.execution_plan:
        for delegate in plan.delegates:
            if delegate.id == COREML:
                for spec in delegate.compile_specs:
                    if spec.key == "compute_units":
                        spec.value = units.encode()
    return bytes(serialize_pte_binary(pte_file, extract_delegate_segments=True))


def program_notes(path: Path) -> dict[str, Any]:
    """Notes for a program built elsewhere, in the form the converter writes: its one delegate, read from
    the program itself, and `delegation` None (no node counts). Imports ExecuTorch's exporter (seconds):
    read once per program, not in every measuring process. Raises ValueError for a program calling
    several delegates."""
    import_exir()  # quietly: the exporter's import writes to stderr
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(path.read_bytes()).program
    delegates = sorted({delegate.id for plan in program.execution_plan for delegate in plan.delegates})
    if len(delegates) > 1:
        raise ValueError(
            f"{path} calls {len(delegates)} delegates ({', '.join(delegates)}); bench runs one per program"
        )
    return {"delegate": delegates[0] if delegates else PORTABLE, "delegation": None}


@dataclass(frozen=True)
class Partition:
    """One Core ML partition of a program, extracted: its package and its export-time identifier."""

    identifier: str  # metadata.json's `identifier`: with the compute units, the runtime's cache key
    package: str  # PARTITION_DIR/lowered_module/model.mlpackage, what `compile_model` takes


def coreml_partitions(pte: bytes, out_dir: Path) -> list[Partition]:
    """Every Core ML partition of the program, in program order. `extract_coreml_models` returns one
    directory per partition (`out_dir/model_N`), not a package: the package and the metadata lie in
    its `lowered_module` (`coremltools.models.utils.compile_model` takes only a path ending in
    `.mlpackage` or `.mlmodel`). Raises ValueError for a partition without them."""
    import_exir()
    from executorch.examples.apple.coreml.scripts.extract_coreml_models import extract_coreml_models

    with contextlib.redirect_stdout(io.StringIO()):  # the script prints a line per partition
        directories = extract_coreml_models(pte, out_dir)
    partitions = []
    for directory in directories:
        package = directory / "lowered_module" / "model.mlpackage"
        metadata = directory / "lowered_module" / "metadata.json"
        if not package.is_dir() or not metadata.is_file():
            found = ", ".join(sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))) or "nothing"
            raise ValueError(
                f"Core ML partition {directory.name}: no lowered_module/model.mlpackage and "
                f"metadata.json (found: {found})"
            )
        identifier = json.loads(metadata.read_text())["identifier"]
        partitions.append(Partition(identifier, str(package.resolve())))
    return partitions


def compute_plan(partitions: list[Partition], device: str, workdir: Path) -> dict[str, Any]:
    """The compute plan of every partition for the device's compute units (macOS 14.4+), its ops summed by
    preferred device, each partition's own counts beside; or the `coreml` backend's unavailable record of
    the first partition whose plan cannot be read."""
    import coremltools as ct

    from harness.backends.coreml import COMPUTE_UNITS as CT_UNITS
    from harness.backends.coreml import read_compute_plan

    if not partitions:
        return {"source": "unavailable: the program has no Core ML partition"}
    units = getattr(ct.ComputeUnit, CT_UNITS[device])
    by_device: dict[str, int] = {}
    each = []
    for index, partition in enumerate(partitions, start=1):
        compiled = ct.models.utils.compile_model(partition.package, str(workdir / f"partition_{index}.mlmodelc"))
        plan = read_compute_plan(compiled, units)
        if "by_device" not in plan:
            return plan
        for where, ops in plan["by_device"].items():
            by_device[where] = by_device.get(where, 0) + ops
        each.append(
            {"identifier": partition.identifier, "by_device": plan["by_device"], "cost_share": plan["cost_share"]}
        )
    return {"source": "MLComputePlan", "by_device": by_device, "partitions": each}


def readable_plan(partitions: list[Partition], device: str, workdir: Path) -> dict[str, Any]:
    """`compute_plan`, or the reason it cannot be read in its place: the case then runs on `cpu` and `all`
    under the requested label, and is refused on `gpu` and `ane` with that reason (`plan_refusal`)."""
    try:
        return compute_plan(partitions, device, workdir)
    except Exception as exc:  # compiling or planning on any macOS: the case must survive it, with the reason
        logger.warning("compute plan of the Core ML partitions for %s not read: %s", device, exc)
        return {"source": f"unavailable: {first_line(exc)}"}


def stage_program(source: Path, device: str, directory: Path, rewrite: bool) -> Path:
    """The program as measured on `device`, written to `directory` with its notes beside it (`model.pte`,
    `delegation.json`): a Core ML program with `rewrite`, rewritten for the device's compute units, its
    partitions' identifiers and compute plan noted (read here, once, not in each measuring process);
    any other program linked as it is. Notes are the converter's, or read from the program where none
    lie beside it. Imports ExecuTorch's exporter (seconds)."""
    beside = source.parent / DELEGATION_FILE
    notes = json.loads(beside.read_text()) if beside.exists() else program_notes(source)
    directory.mkdir(parents=True)
    target = directory / "model.pte"
    if rewrite and notes["delegate"] == COREML:
        import_exir()
        pte = source.read_bytes()
        units = COMPUTE_UNITS[device]
        target.write_bytes(with_compute_units(pte, units))
        with tempfile.TemporaryDirectory(prefix="bench-executorch-plan-") as scratch:
            partitions = coreml_partitions(pte, Path(scratch) / "extracted")
            plan = readable_plan(partitions, device, Path(scratch))
        notes = {
            **notes,
            STAGED_UNITS: units,
            "coreml_partitions": [partition.identifier for partition in partitions],
            "compute_plan": plan,
        }
    else:
        target.symlink_to(source.resolve())
    (directory / DELEGATION_FILE).write_text(json.dumps(notes, indent=1, sort_keys=True))
    return target


def coreml_host() -> bool:
    """Whether this host's ExecuTorch can have the Core ML delegate: only the macOS wheel builds it in."""
    return platform.system() == "Darwin"


def compiled_cache_entries(identifiers: list[str], units: str, caches: Path) -> list[Path]:
    """Where the Core ML runtime keeps each partition's compiled model: `<identifier>_<compute units>.mlmodelc`
    in `executorchcoreml` under the user's caches directory (its asset manager, the default path)."""
    return [caches / CACHE_PRODUCT / f"{identifier}_{units}.mlmodelc" for identifier in identifiers]


def user_caches() -> Path:
    """NSCachesDirectory in the user domain of a process outside a sandbox."""
    return Path.home() / "Library" / "Caches"


@dataclass(frozen=True)
class CacheState:
    """What the timed cold load of a Core ML program will do: compile every partition (its cache entries
    gone), or possibly hit the cache (an entry could not be removed: why)."""

    cold_load: ColdLoad
    detail: str


def clear_compiled_cache(entries: list[Path]) -> CacheState:
    """Each cached compiled model removed, so the timed load compiles as the `coreml` backend's does."""
    removed = 0
    for entry in entries:
        if not entry.exists():
            continue
        try:
            shutil.rmtree(entry)
        except OSError as exc:
            return CacheState("cache hit possible", f"{entry} could not be removed: {exc.strerror or exc}")
        removed += 1
    return CacheState(
        "compiled",
        f"{len(entries)} partition(s) compiled in the timed load: {removed} cached compiled model(s) removed "
        f"from {entries[0].parent if entries else 'the cache'} before it",
    )


def runtime(threads: int) -> Any:
    """ExecuTorch's C extension with its thread pool set (0: the runtime's default), initialised quietly
    (cpuinfo writes to stderr on first use)."""
    logging.getLogger("torchao").setLevel(logging.ERROR)
    with quiet_stderr():
        import torch  # noqa: F401  (loads libtorch, which the extension links against)
        from executorch.extension.pybindings import _C

        if threads > 0:
            _C._unsafe_reset_threadpool(threads)
        _C._threadpool_get_thread_count()
    return _C


def coreml_describe(units: str, cache: CacheState | None) -> dict[str, Any]:
    """The runtime record of a Core ML program: its compute units, what its cold load was, and the prewarm
    prediction `load_method` ran (the delegate's default), so `first_inference_ms` is the first after it."""
    return {
        "compute_units": units,
        "cold_load": cache.cold_load if cache else None,
        "cold_load_detail": cache.detail if cache else None,
        "prewarm": PREWARM,
    }


class ExecuTorchSession(Session):
    def __init__(
        self,
        program: Any,
        method: Any,
        describe: dict[str, Any],
        placement: dict[str, Any],
        decoder: dict[str, Any] | None = None,
    ) -> None:
        self.program = program  # the method runs out of the program's memory
        self.method = method
        self.described = describe
        self.placed = placement
        if decoder is not None:  # a static-cache decoder: the cache lives in the method's mutable buffers
            self.input_names = list(decoder["inputs"])
            self.cache_in_program = True
            self.state_bytes = int(decoder["state_bytes"])
            self.state_kind = str(decoder["kv_cache"])

    @staticmethod
    def _tensors(inputs: list[np.ndarray]) -> list[Any]:
        import torch

        return [torch.from_numpy(np.ascontiguousarray(x)) for x in inputs]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [o.float().numpy() for o in self.method(self._tensors(inputs))]

    def runner(self, inputs: list[np.ndarray]) -> Callable[[], Any]:
        tensors = self._tensors(inputs)
        call = self.method
        return lambda: call(tensors)

    def describe(self) -> dict[str, Any]:
        return self.described

    def placement(self) -> dict[str, Any]:
        return self.placed


def _probe_artifact(workdir: Path) -> str:
    """An XNNPACK program, as et-xnnpack-fp32; on macOS the `gpu` and `ane` lines then say XNNPACK is CPU-only."""
    return converted_probe(workdir, "et-xnnpack-fp32")


def _coreml_probe_artifact(workdir: Path) -> str:
    """A Core ML program, as et-coreml-fp16: its load path (staging, every partition's compute plan) is
    not XNNPACK's."""
    return converted_probe(workdir, "et-coreml-fp16")


def _coreml_delegate_reason() -> str | None:
    return None if coreml_host() else f"ExecuTorch's Core ML delegate {REQUIRES_MACOS}"


def executorch_placed(session: Session, device: str) -> str:
    """'5 of 5 nodes in XnnpackBackend (cpu 5)', from the delegation info written at export; for a Core ML
    program with its compute plan, '9 of 9 nodes in CoreMLBackend (Core ML ops: ane 7, cpu 1)'."""
    placement = session.placement()
    (delegate, inside), *_ = placement["by_delegate"].items()
    total = sum(placement["by_delegate"].values())
    where = ", ".join(f"{d} {n}" for d, n in sorted(placement["by_device"].items()))
    if placement.get("by_device_counts") == COREML_OPS:
        where = f"Core ML ops: {where}"
    return f"{inside} of {total} nodes in {delegate} ({where})"


EXECUTORCH_COREML = "executorch (Core ML delegate)"


class ExecuTorchBackend(Backend):
    name = "executorch"
    format = "executorch"
    devices: ClassVar[tuple[str, ...]] = tuple(COMPUTE_UNITS)
    template: ClassVar[str | None] = "harness.process.templates.executorch"
    suffixes = (".pte",)
    probe_kits = (
        ProbeKit(_probe_artifact, probe_model_inputs, executorch_placed),
        ProbeKit(
            _coreml_probe_artifact, probe_model_inputs, executorch_placed, EXECUTORCH_COREML, _coreml_delegate_reason
        ),
    )

    @classmethod
    def staging(cls, notes: dict[str, Any] | None) -> bool | None:
        """A program built elsewhere (no notes beside it) is staged, its notes read from the program; and
        where this host can run the Core ML delegate, a Core ML program is rewritten for the device's
        compute units. Either way once, in the parent, not in every measuring process."""
        rewrite = coreml_host()
        if notes is None:
            return rewrite
        return True if rewrite and notes.get("delegate") == COREML else None

    @classmethod
    def stage(cls, source: Path, device: str, directory: Path, rewrite: bool) -> Path:
        return stage_program(source, device, directory, rewrite)

    def __init__(self) -> None:
        self.runtime: Any = None
        self.notes: dict[str, Any] = {}
        self.program_path = ""
        self.coreml_plan: dict[str, Any] | None = None
        self.cache: CacheState | None = None
        self.workdir: tempfile.TemporaryDirectory[str] | None = None

    def available(self, device: str) -> str | None:
        return unavailable_reason(
            device, platform.system(), platform.machine(), importlib.util.find_spec("executorch") is not None
        )

    def prepare(self, request: LoadRequest) -> None:
        """The runtime and thread pool; for a Core ML program this host can run, the program staged for the
        device (by the parent, or here where the caller did not: bench devices --check, a direct load) and
        its partitions' compiled models removed from the runtime's cache (all before the timed load)."""
        self.runtime = runtime(request.threads)
        self.notes = json.loads((Path(request.artifact_path).parent / DELEGATION_FILE).read_text())
        self.program_path = request.artifact_path
        registered = list(self.runtime._get_registered_backend_names())
        runnable = delegate_refusal(self.notes["delegate"], request.device, registered) is None
        if runnable and self.notes["delegate"] == COREML:
            units = COMPUTE_UNITS[request.device]
            if self.notes.get(STAGED_UNITS) != units:
                self.workdir = tempfile.TemporaryDirectory(prefix="bench-executorch-")
                staged = stage_program(
                    Path(request.artifact_path), request.device, Path(self.workdir.name) / "staged", rewrite=True
                )
                self.program_path = str(staged)
                self.notes = json.loads((staged.parent / DELEGATION_FILE).read_text())
            self.coreml_plan = self.notes["compute_plan"]
            self.cache = clear_compiled_cache(
                compiled_cache_entries(self.notes["coreml_partitions"], units, user_caches())
            )

    def load(self, request: LoadRequest) -> Session:
        from harness.backends.coreml import plan_refusal, visible_devices

        _C = self.runtime
        registered = list(_C._get_registered_backend_names())
        refusal = delegate_refusal(self.notes["delegate"], request.device, registered)
        if refusal is None and self.coreml_plan is not None:
            refusal = plan_refusal(self.coreml_plan, request.device, visible_devices())
        if refusal is not None:
            raise DeviceUnavailable(refusal)
        program = _C._load_program(
            self.program_path,
            enable_etdump=False,
            debug_buffer_size=0,
            program_verification=_C.Verification.InternalConsistency,
            data_path=None,
        )
        method = program.load_method("forward")
        describe = {
            "executorch": metadata.version("executorch"),
            "delegate": self.notes["delegate"],
            "threads": int(_C._threadpool_get_thread_count()),
            "registered_backends": registered,
        }
        if self.notes["delegate"] == COREML:
            describe |= coreml_describe(COMPUTE_UNITS[request.device], self.cache)
        placement = delegation_placement(self.notes, self.coreml_plan, request.device)
        return ExecuTorchSession(program, method, describe, placement, self.notes.get("decoder"))

    def close(self) -> None:
        if self.workdir is not None:
            self.workdir.cleanup()
        self.workdir = None
        self.coreml_plan = None
        self.cache = None
