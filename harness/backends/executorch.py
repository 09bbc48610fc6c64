"""ExecuTorch's runtime on a `.pte`: XNNPACK (or portable kernels) on the CPU, and on macOS the Core ML
delegate with compute units per device.

The runtime is ExecuTorch's C extension (`executorch.extension.pybindings._C`) loaded directly: the
public `executorch.runtime` wrapper imports the whole exporter first, 7-12 s per worker process here,
where the extension itself loads in milliseconds once torch is imported.

Device truth: an XNNPACK program runs only `cpu`. A Core ML program's compute units are a compile spec
baked into the `.pte` (the Python runtime takes no load-time backend options), so a case rewrites that
spec for its device before loading, and, as for the `coreml` backend, a `gpu` or `ane` case whose
compute plan has no op preferring the device is refused. Nodes left outside the delegate run on the
portable CPU kernels and are counted under `cpu` in the placement.

A program is loaded with its delegation info beside it (`delegation.json`): the converter writes it, and
for a program built elsewhere (`bench ab old.pte new.pte`) `harness.ab` writes one from the program
itself (`program_notes`): its delegate, without node counts, which its placement then says.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import platform
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from converters.executorch import DELEGATION_FILE, ET_MISSING, import_exir, quiet_stderr
from harness.backends.base import Backend, DeviceUnavailable, LoadRequest, Session

COMPUTE_UNITS = {"cpu": "cpu_only", "gpu": "cpu_and_gpu", "ane": "cpu_and_ne", "all": "all"}
COREML = "CoreMLBackend"
CPU_DELEGATES = ("XnnpackBackend",)
PORTABLE = "portable kernels"  # a program with no delegate: ExecuTorch's own CPU kernels run all of it
REQUIRES_MACOS = "requires macOS"


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
    """Where the work went: XNNPACK's nodes on the CPU; a Core ML partition's ops by preferred device from its
    compute plan (without a readable plan, under `coreml (requested DEVICE)`: the request, not the device);
    nodes outside the delegate on the portable kernels, always the CPU (less `getitem`, which only unpacks a
    delegate's outputs)."""
    split = notes["delegation"]
    if split is None:
        return {
            "source": f"the program's delegate ({DELEGATION_FILE} absent: node counts unknown)",
            "by_delegate": {notes["delegate"]: None},
        }
    unpacking = split["by_operator"].get("getitem", {}).get("non_delegated", 0)
    portable = split["non_delegated_nodes"] - unpacking
    delegated = (plan or {}).get("by_device")
    if delegated is not None:
        by_device = dict(delegated)
    elif notes["delegate"] == COREML:
        by_device = {f"coreml (requested {device})": split["delegated_nodes"]}
    else:
        by_device = {"cpu": split["delegated_nodes"]}
    if portable:
        by_device["cpu"] = by_device.get("cpu", 0) + portable
    return {
        "source": "executorch delegation info" + (" + MLComputePlan" if delegated is not None else ""),
        "by_device": by_device,
        "by_delegate": {notes["delegate"]: split["delegated_nodes"], "portable kernels": portable},
    }


def with_compute_units(pte: bytes, units: str) -> bytes:
    """The program with its Core ML delegates' `compute_units` compile spec set to `units`."""
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    pte_file = deserialize_pte_binary(pte)
    for plan in pte_file.program.execution_plan:
        for delegate in plan.delegates:
            if delegate.id == COREML:
                for spec in delegate.compile_specs:
                    if spec.key == "compute_units":
                        spec.value = units.encode()
    return bytes(serialize_pte_binary(pte_file))


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


def coreml_plan(pte: bytes, device: str, workdir: Path) -> dict[str, Any]:
    """The compute plan of the (first) Core ML partition for the device's compute units (macOS 14.4+)."""
    import coremltools as ct
    from executorch.examples.apple.coreml.scripts.extract_coreml_models import extract_coreml_models

    from harness.backends.coreml import COMPUTE_UNITS as CT_UNITS
    from harness.backends.coreml import read_compute_plan

    packages = extract_coreml_models(pte, workdir / "extracted")
    units = getattr(ct.ComputeUnit, CT_UNITS[device])
    compiled = ct.models.utils.compile_model(str(packages[0]), str(workdir / "partition.mlmodelc"))
    return read_compute_plan(compiled, units)


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


class ExecuTorchSession(Session):
    def __init__(self, program: Any, method: Any, describe: dict[str, Any], placement: dict[str, Any]) -> None:
        self.program = program  # the method runs out of the program's memory
        self.method = method
        self.described = describe
        self.placed = placement

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


class ExecuTorchBackend(Backend):
    name = "executorch"
    devices: ClassVar[tuple[str, ...]] = tuple(COMPUTE_UNITS)

    def __init__(self) -> None:
        self.runtime: Any = None
        self.notes: dict[str, Any] = {}
        self.program_path = ""
        self.coreml_plan: dict[str, Any] | None = None
        self.workdir: tempfile.TemporaryDirectory[str] | None = None

    def available(self, device: str) -> str | None:
        return unavailable_reason(
            device, platform.system(), platform.machine(), importlib.util.find_spec("executorch") is not None
        )

    def prepare(self, request: LoadRequest) -> None:
        """The runtime and thread pool; for a Core ML program on macOS, the program rewritten for the
        device's compute units and the compute plan read (all before the timed load)."""
        self.runtime = runtime(request.threads)
        self.notes = json.loads((Path(request.artifact_path).parent / DELEGATION_FILE).read_text())
        self.program_path = request.artifact_path
        registered = list(self.runtime._get_registered_backend_names())
        runnable = delegate_refusal(self.notes["delegate"], request.device, registered) is None
        if runnable and self.notes["delegate"] == COREML:
            self.workdir = tempfile.TemporaryDirectory(prefix="bench-executorch-")
            workdir = Path(self.workdir.name)
            pte = Path(request.artifact_path).read_bytes()
            self.program_path = str(workdir / "model.pte")
            Path(self.program_path).write_bytes(with_compute_units(pte, COMPUTE_UNITS[request.device]))
            self.coreml_plan = coreml_plan(pte, request.device, workdir)

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
            **({"compute_units": COMPUTE_UNITS[request.device]} if self.notes["delegate"] == COREML else {}),
        }
        placement = delegation_placement(self.notes, self.coreml_plan, request.device)
        return ExecuTorchSession(program, method, describe, placement)

    def close(self) -> None:
        if self.workdir is not None:
            self.workdir.cleanup()
        self.workdir = None
        self.coreml_plan = None
