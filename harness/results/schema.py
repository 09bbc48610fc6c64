"""The results contract (schema_version 1): the one thing the harness writes and the reports read.

Version history:
  1 - first version: environment, resolved profile, one record per case (see DESIGN.md).

Add keys freely; never rename or drop one without a new version and a loader that still reads 1.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from profiles.errors import SchemaError

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
REFERENCE_ORDER = ("torch-fp32", "onnx-fp32", "coreml-fp32")  # a model's reference: the first of these measured

Status = Literal["ok", "failed", "skipped"]


@dataclass
class ArtifactInfo:
    """What a converter wrote: the files together (graph plus external data), hashed as one."""

    path: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    files: list[str] = field(default_factory=list)
    conversion_s: float | None = None
    converter_path: str | None = None  # e.g. "torch.onnx dynamo", "torch.onnx torchscript", "state_dict"
    opset: int | None = None
    deployment_target: str | None = None
    op_histogram: dict[str, int] = field(default_factory=dict)
    weight_bytes_by_dtype: dict[str, int] = field(default_factory=dict)
    cache_hit: bool = False
    cache_key: str | None = None
    cache_explanation: str | None = None  # why the cache hit or missed
    notes: dict[str, Any] = field(default_factory=dict)  # converter-specific, e.g. ExecuTorch's delegation split


@dataclass
class ConvertRow:
    """One model x variant of `bench convert`: what was built, or why not."""

    model: str
    variant: str
    format: str
    status: str  # ok | skipped | failed
    reason: str | None
    artifact: ArtifactInfo


@dataclass
class LoadTimes:
    cold: float | None = None  # ms, first load in a fresh process
    warm: float | None = None  # ms, a second load in the same process


@dataclass
class LatencyStats:
    """Milliseconds per inference. `median` is the median of per-process medians."""

    median: float
    mean: float
    std: float
    min: float
    max: float
    p90: float
    p99: float
    ci95: list[float]
    n: int
    cv: float
    process_medians: list[float]
    calls_per_sample: int
    outliers_mild: int = 0
    outliers_severe: int = 0


@dataclass
class MemoryStats:
    """Bytes. `peak_rss_bytes` is the high-water mark during inference; `load_peak_bytes` during load."""

    source: str = "unknown"
    before_load_bytes: int | None = None
    after_load_bytes: int | None = None
    load_delta_bytes: int | None = None
    load_peak_bytes: int | None = None
    peak_rss_bytes: int | None = None
    gpu: dict[str, Any] | None = None  # device memory where a GPU ran the case, with its source


@dataclass
class EnergyStats:
    source: str = "cpu-time"
    cpu_ms_per_inference: float | None = None
    mj_per_inference: float | None = None
    idle_subtracted: bool = False  # counter sources: an idle baseline measured just before was subtracted
    idle_mw: float | None = None
    note: str | None = None  # why the CPU-time proxy stands in for a counter this host should have
    missing_channels: list[str] = field(default_factory=list)  # counter channels that read nothing (not zero)


@dataclass
class ParityResult:
    passed: bool
    gate: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    samples: int = 0
    inputs: str = ""  # where the parity inputs came from: "dataset:digits" or "synthetic"
    diagnosis: dict[str, Any] | None = None  # for a failing ONNX variant: where it left the reference


@dataclass
class PairedProcess:
    """One paired process of a comparison, as measured: every block of both arms (ms per call, in time
    order; B has two per round, A two or, when it was the reference of K variants at once, about
    2 sqrt(K): `harness.pairing.worker.reference_share`), the calls per block, and which arm was created first."""

    a_ms: list[float]
    b_ms: list[float]
    calls: list[int]  # [A, B]
    created_first: Literal["a", "b"]
    log_ratio: float  # the per-process statistic that PairedComparison.statistic names (harness.pairing.sequential)
    lead_in: list[int] = field(default_factory=list)  # [A, B]: untimed calls before each block (harness.pairing.worker)


@dataclass
class PairedComparison:
    """B (this case) against A, measured in the same processes, alternated. `ratio` is B/A; `ci95` the
    interval that holds over all sequential looks; `processes` keep every block, to recompute."""

    against: str  # what A was: the reference variant, or "baseline" (the baseline run's artifact)
    ratio: float
    ci95: list[float]
    verdict: str  # regression | improvement | no change | inconclusive
    threshold: float
    detail: str
    statistic: str
    processes: list[PairedProcess] = field(default_factory=list)
    failure: str | None = None  # a paired process failed (its first line): the comparison is an error


@dataclass
class Result:
    model: str
    variant: str
    format: str
    device: str
    backend: str
    status: Status
    reason: str | None = None
    artifact: ArtifactInfo = field(default_factory=ArtifactInfo)
    load_ms: LoadTimes = field(default_factory=LoadTimes)
    first_inference_ms: float | None = None
    latency_ms: LatencyStats | None = None
    samples_ms: list[list[float]] = field(default_factory=list)
    memory: MemoryStats = field(default_factory=MemoryStats)
    energy: EnergyStats = field(default_factory=EnergyStats)
    parity: ParityResult | None = None
    placement: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    runtime: dict[str, Any] = field(default_factory=dict)  # what the backend says it actually used
    thermal_states: list[dict[str, Any]] = field(default_factory=list)  # per process: source, start, end level
    versus: PairedComparison | None = None  # against the model's reference on the same device, paired
    against_baseline: PairedComparison | None = None  # with --baseline: against the baseline's artifact
    generation: dict[str, Any] | None = None  # decoders: TTFT, decode ms/token, tokens/s, memory per context

    @property
    def case_key(self) -> tuple[str, str, str, str]:
        return (self.model, self.variant, self.device, self.backend)


@dataclass
class Environment:
    os: str
    machine: str
    cpu: str
    cores: int
    python: str
    packages: dict[str, str]
    threads: dict[str, Any]
    hostname: str = ""
    accelerator: str = ""  # what besides the CPU can run a model here, e.g. "NVIDIA H200"; "" for none


def machine_key(environment: Environment) -> str:
    """The machine a history series belongs to: CPU model, core count, OS and accelerator. The hostname is
    left out (it is recorded on its own), so a fleet of identical runners forms one series."""
    accelerator = environment.accelerator or "no accelerator"
    return f"{environment.cpu}, {environment.cores} cores, {environment.os}, {accelerator}"


@dataclass
class RunRecord:
    run_id: str
    created_at: str
    environment: Environment
    profile: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    revision: str | None = None  # the code under test: `bench run --revision`, else the commit of the directory
    revision_describe: str | None = None  # `git describe --always --dirty` of that directory, where it is one
    label: str | None = None  # `bench run --label`: free text, e.g. "nightly"
    machine_key: str = ""  # the history series' machine (`machine_key`)

    def __post_init__(self) -> None:
        """A record without a machine key (a file written before it was recorded) takes its environment's."""
        if not self.machine_key:
            self.machine_key = machine_key(self.environment)


def headline_figures(result: Result) -> dict[str, Any]:
    """One case's identity and headline figures, flat: what the store's `cases` table and the pandas
    frame both hold (each keeps the keys it has columns for)."""
    lat = result.latency_ms
    return {
        "model": result.model,
        "variant": result.variant,
        "format": result.format,
        "device": result.device,
        "backend": result.backend,
        "status": result.status,
        "reason": result.reason,
        "median_ms": lat.median if lat else None,
        "ci95_lo_ms": lat.ci95[0] if lat else None,
        "ci95_hi_ms": lat.ci95[1] if lat else None,
        "p90_ms": lat.p90 if lat else None,
        "p99_ms": lat.p99 if lat else None,
        "mean_ms": lat.mean if lat else None,
        "std_ms": lat.std if lat else None,
        "cv": lat.cv if lat else None,
        "n_samples": lat.n if lat else None,
        "processes": len(lat.process_medians) if lat else None,
        "load_cold_ms": result.load_ms.cold,
        "load_warm_ms": result.load_ms.warm,
        "first_inference_ms": result.first_inference_ms,
        "peak_rss_bytes": result.memory.peak_rss_bytes,
        "load_delta_bytes": result.memory.load_delta_bytes,
        "energy_source": result.energy.source,
        "cpu_ms_per_inference": result.energy.cpu_ms_per_inference,
        "mj_per_inference": result.energy.mj_per_inference,
        "size_bytes": result.artifact.size_bytes,
        "sha256": result.artifact.sha256,
        "parity_passed": None if result.parity is None else result.parity.passed,
    }


_RUN_ADAPTER = TypeAdapter(RunRecord)


def json_safe(value: Any) -> Any:
    """The value with every NaN or infinity replaced by None: JSON has no such numbers, and one bad
    output must not make a whole results file unwritable."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def to_json(run: RunRecord) -> str:
    return json.dumps(json_safe(asdict(run)), indent=1, allow_nan=False)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_results(run: RunRecord, path: Path) -> None:
    """Atomic rewrite, so a reader (or a Ctrl-C) never sees half a file. The file gets the permissions
    any new file of the user's gets (mkstemp's are 0600); the temp file never outlives a failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as handle:
            handle.write(to_json(run))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_results(data: Any, source: str) -> RunRecord:
    if not isinstance(data, dict) or "schema_version" not in data:
        raise SchemaError(f"{source}: not an ondevice-bench results file (no schema_version)")
    version = data["schema_version"]
    if version not in SUPPORTED_VERSIONS:
        raise SchemaError(
            f"{source}: schema_version {version!r} is not supported by this bench "
            f"(reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade ondevice-bench"
        )
    try:
        return _RUN_ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SchemaError(f"{source}: {where}: {first['msg']}") from exc


def load_results(path: Path) -> RunRecord:
    """A results file, or `SchemaError` in one line for anything that is not a readable one."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise SchemaError(f"{path}: no such results file") from exc
    except IsADirectoryError as exc:
        raise SchemaError(f"{path}: is a directory, not a results file") from exc
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{path}: not a results file (not UTF-8 text at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise SchemaError(f"{path}: not a results file (JSON nested too deeply)") from exc
    try:
        return parse_results(data, str(path))
    except RecursionError as exc:
        raise SchemaError(f"{path}: not a results file (nested too deeply)") from exc
