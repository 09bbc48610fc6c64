"""The results contract (schema_version 1): the one thing the harness writes and the reports read.

Version history:
  1 - first version: environment, resolved profile, one record per case (see DESIGN.md).

Add keys freely; never rename or drop one without a new version and a loader that still reads 1. Every
record here is typed; a field whose keys a record does not fix (a converter's notes, what a runtime says
of itself) holds `JsonValue`s. A field marked `OMIT_NONE` is left out of the JSON while it is None: the
keys a file holds are the keys the bench measured, as they were before the records were typed.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic import JsonValue as JsonValue  # str | int | float | bool | None, or a list or str-keyed dict of them

from profiles.catalog import Device as Device  # the bottom layer's vocabularies, with the results' own below
from profiles.catalog import Format as Format
from profiles.errors import SchemaError
from profiles.schema import RECORDED, ResolvedProfile

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
REFERENCE_ORDER = ("torch-fp32", "onnx-fp32", "coreml-fp32")  # a model's reference: the first of these measured

Status = Literal["ok", "failed", "skipped"]
# a paired comparison's (harness.pairing.sequential) and an unpaired one's (harness.results.stats)
Verdict = Literal["regression", "improvement", "no change", "within noise", "inconclusive"]
# what one paired process's log-ratio is computed from (harness.pairing.sequential.PROCESS_STATISTICS):
# two builds of one variant by rounds, two different variants by the fastest third
Statistic = Literal["median of per-round log-ratios", "log-ratio of the fastest third of each arm's blocks"]
ROUNDS_STATISTIC: Statistic = "median of per-round log-ratios"
FAST_THIRD_STATISTIC: Statistic = "log-ratio of the fastest third of each arm's blocks"
OMIT_NONE = {"omit_none": True}


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
    notes: dict[str, JsonValue] = field(default_factory=dict)  # converter-specific, e.g. ExecuTorch's delegation split


@dataclass
class ConvertRow:
    """One model x variant of `bench convert`: what was built, or why not."""

    model: str
    variant: str
    format: Format
    status: Status
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
class GpuMemory:
    """Device memory where a GPU ran the case, labelled with its source; each source reads its own figures
    (`source` alone says why none could be read)."""

    source: str
    used_bytes: int | None = field(default=None, metadata=OMIT_NONE)  # NVML: this process's memory
    peak_allocated_bytes: int | None = field(default=None, metadata=OMIT_NONE)  # torch.cuda's allocator
    peak_reserved_bytes: int | None = field(default=None, metadata=OMIT_NONE)
    driver_allocated_bytes: int | None = field(default=None, metadata=OMIT_NONE)  # torch.mps's driver


@dataclass
class MemoryStats:
    """Bytes. `peak_rss_bytes` is the high-water mark during inference; `load_peak_bytes` during load."""

    source: str = "unknown"
    before_load_bytes: int | None = None
    after_load_bytes: int | None = None
    load_delta_bytes: int | None = None
    load_peak_bytes: int | None = None
    peak_rss_bytes: int | None = None
    gpu: GpuMemory | None = None


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
class LayerComparison:
    """One layer of the torch reference against the same tensor in the variant's graph."""

    layer: str
    tensor: str
    snr_db: float | None  # None where the two are identical
    max_abs_err: float
    nonfinite: int


@dataclass
class SnrDrop:
    layer: str
    drop_db: float
    snr_db: float


@dataclass
class WorstSample:
    index: int
    cosine: float


@dataclass
class Divergence:
    """Where a decoder's greedy continuation first left the reference's."""

    prompt: int
    token: int


@dataclass
class DiagnosisReport:
    """Where a failing variant leaves the reference (harness.accuracy.diagnose), or why it is not
    diagnosed: then only `summary` and `first_divergent_layer` (None) are set. Keys in the JSON order the
    layer-by-layer diagnosis always wrote them."""

    first_divergent_layer: str | None = None
    tolerance_db: float | None = field(default=None, metadata=OMIT_NONE)
    largest_drops: list[SnrDrop] | None = field(default=None, metadata=OMIT_NONE)
    worst_samples: list[WorstSample] | None = field(default=None, metadata=OMIT_NONE)
    layers: list[LayerComparison] | None = field(default=None, metadata=OMIT_NONE)
    summary: str = ""  # always set: the one line the reports print
    divergence: Divergence | None = field(default=None, metadata=OMIT_NONE)  # decoders


@dataclass
class ParityResult:
    passed: bool
    gate: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    samples: int = 0
    inputs: str = ""  # where the parity inputs came from: "dataset:digits" or "synthetic"
    diagnosis: DiagnosisReport | None = None  # for a failing variant: where it left the reference


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
    verdict: Verdict  # regression | improvement | no change | inconclusive
    threshold: float
    detail: str
    statistic: Statistic
    processes: list[PairedProcess] = field(default_factory=list)
    failure: str | None = None  # a paired process failed (its first line): the comparison is an error


@dataclass
class ThermalState:
    """One process's thermal level at the start and end of sampling, and where it was read."""

    source: str
    start: str | None
    end: str | None


@dataclass
class GenerationSummary:
    """A decoder case across its processes (harness.generation.measure.summarise_generation): per prompt
    length (keys are the lengths as text) TTFT and decode ms/token, tokens/s; peak memory per context
    length (prompt + token budget) and its growth; the KV cache as the backend holds it."""

    prompt_lengths: list[int]
    new_tokens: int
    decoding: str
    ttft_ms: dict[str, LatencyStats]
    decode_ms_per_token: dict[str, LatencyStats]
    tokens_per_s: dict[str, float | None]
    peak_rss_bytes_by_context: dict[str, int]  # context = prompt + token budget; prefill's scratch included
    # measured while decoding; includes what allocators keep from the prefill (ORT's arena does not shrink)
    decode_peak_rss_bytes_by_context: dict[str, int]
    memory_growth_bytes_per_1k_tokens: float | None
    peak_growth_bytes_per_1k_tokens: float | None  # measured, prefill included
    # computed from the cache's shape and dtype as the backend holds it (`kv_cache_record`)
    kv_cache: str | None = None
    kv_cache_bytes_per_1k_tokens: int | None = None
    kv_state_bytes: int | None = None
    cpu_ms_per_token: float | None = None
    latency_ms_is: str = ""
    skipped_prompt_lengths: dict[str, str] = field(default_factory=dict)  # length -> why it was not run


@dataclass
class AdapterTaskMetric:
    """An adapter's task metric on its domain's held-out rows beside its base's on the same rows
    (`profiles.zoo.adapters.task_metric`): held-out perplexity per token (decoders) or accuracy."""

    metric: Literal["perplexity", "accuracy"]
    adapter: float
    base: float
    rows: int
    data: str  # which rows: the adapter's own domain, or the base's dataset for a user adapter

    @property
    def beats_base(self) -> bool:
        return self.adapter < self.base if self.metric == "perplexity" else self.adapter > self.base


@dataclass
class AdapterRecord:
    """A `BASE+ADAPTER` model of the run: what its LoRA adapter adds to the base, and its task metric.
    Measured once per model, in the worker that prepared it; its cases' results carry the rest."""

    model: str  # the results' model name, `BASE+ADAPTER`
    base: str
    adapter: str  # a zoo adapter's name, or the user's peft directory
    ranks: list[int]
    targets: list[str]  # the base's modules it adapts
    parameters: int
    weight_bytes: int  # its LoRA factors in fp32: what peft's adapter file holds, less its header
    task: AdapterTaskMetric | None = None  # None: no dataset to judge it on


@dataclass
class Result:
    model: str
    variant: str
    format: Format
    device: Device
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
    placement: dict[str, JsonValue] = field(default_factory=dict)  # where the ops ran, as the backend reports it
    warnings: list[str] = field(default_factory=list)
    runtime: dict[str, JsonValue] = field(default_factory=dict)  # what the backend says it actually used
    thermal_states: list[ThermalState] = field(default_factory=list)  # per process
    versus: PairedComparison | None = None  # against the model's reference on the same device, paired
    against_baseline: PairedComparison | None = None  # with --baseline: against the baseline's artifact
    # an unfused-adapter variant (`*-lora-unfused`): against the fused variant of its recipe, paired
    versus_fused: PairedComparison | None = field(default=None, metadata=OMIT_NONE)
    generation: GenerationSummary | None = None  # decoders: TTFT, decode ms/token, tokens/s, memory per context
    node: str | None = None  # the cluster node(s) its measuring processes ran on (`--cluster`); None: this host

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
    threads: dict[str, int | str]  # intra_op (the profile's), and each thread variable that was set
    hostname: str = ""
    accelerator: str = ""  # what besides the CPU can run a model here, e.g. "NVIDIA H200"; "" for none


def machine_key(environment: Environment) -> str:
    """The machine a history series belongs to: CPU model, core count, OS and accelerator. The hostname is
    left out (it is recorded on its own), so a fleet of identical runners forms one series."""
    accelerator = environment.accelerator or "no accelerator"
    return f"{environment.cpu}, {environment.cores} cores, {environment.os}, {accelerator}"


@dataclass
class RankedVariant:
    """A candidate as the decision ranked it: its latency ratio to the reference, with the interval."""

    variant: str
    ratio: float
    ci95: list[float] = field(default_factory=list)  # empty: the comparison has no interval


@dataclass
class DecisionRecord:
    """Which variant to ship for one model on one device (`harness.results.readings.decision`), as the results
    file keeps it: what every renderer prints, for a dashboard to read without recomputing."""

    model: str
    device: str
    reference: str | None
    basis: Literal["paired", "unpaired median"] | None  # None: no candidate
    variant: str | None
    sentence: str
    tie_break: Literal["size", "peak memory", "latency"] | None = None
    ranked: list[RankedVariant] = field(default_factory=list)
    tied: list[str] = field(default_factory=list)  # the variants latency could not separate from the chosen
    excluded: dict[str, str] = field(default_factory=dict)  # variant -> why it was no candidate


@dataclass
class ProcessTiming:
    """One worker process of a run: its wall time, spawn to the first load (interpreter, imports, the
    runtime's set-up: what a process pays before it measures anything), and its time in timed sampling."""

    kind: Literal["prepare", "unpaired", "paired"]
    label: str
    wall_s: float
    startup_s: float | None = None  # None: the process ended before it loaded anything
    sampling_s: float = 0.0


@dataclass
class RunTiming:
    """Where a run's wall time went, by phase, and per worker process (`harness.results.readings.timing`)."""

    wall_s: float = 0.0
    prepare_s: float = 0.0  # preparing the models: reference outputs and every conversion
    unpaired_s: float = 0.0
    paired_s: float = 0.0
    reporting_s: float = 0.0  # the tables, HTML and Markdown after the measuring
    conversions_s: float = 0.0  # inside converters, artifacts built this run (a cache hit costs none)
    processes: list[ProcessTiming] = field(default_factory=list)


@dataclass
class RunRecord:
    run_id: str
    created_at: str
    environment: Environment
    profile: ResolvedProfile
    results: list[Result] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    decisions: list[DecisionRecord] = field(default_factory=list)  # written when the run ends
    timing: RunTiming | None = None  # None in files written before it was recorded
    revision: str | None = None  # the code under test: `bench run --revision`, else the commit of the directory
    revision_describe: str | None = None  # `git describe --always --dirty` of that directory, where it is one
    label: str | None = None  # `bench run --label`: free text, e.g. "nightly"
    machine_key: str = ""  # the history series' machine (`machine_key`)
    adapters: list[AdapterRecord] | None = field(default=None, metadata=OMIT_NONE)  # its BASE+ADAPTER models

    def __post_init__(self) -> None:
        """A record without a machine key (a file written before it was recorded) takes its environment's."""
        if not self.machine_key:
            self.machine_key = machine_key(self.environment)


def headline_figures(result: Result) -> dict[str, JsonValue]:
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


def json_safe(value: object) -> JsonValue:
    """A record as JSON values, the one writer of this schema: a dataclass field by field (one marked
    `OMIT_NONE` left out while None), a pydantic model as it dumps itself, and every NaN or infinity as
    None: JSON has no such numbers, and one bad output must not make a whole results file unwritable."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: json_safe(getattr(value, item.name))
            for item in fields(value)
            if not (item.metadata.get("omit_none") and getattr(value, item.name) is None)
        }
    if isinstance(value, BaseModel):
        return json_safe(value.model_dump())
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value  # type: ignore[return-value]  (str, int, bool, None)


def to_json(run: RunRecord) -> str:
    return json.dumps(json_safe(run), indent=1, allow_nan=False)


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


def parse_results(data: object, source: str) -> RunRecord:
    if not isinstance(data, dict) or "schema_version" not in data:
        raise SchemaError(f"{source}: not an ondevice-bench results file (no schema_version)")
    version = data["schema_version"]
    if version not in SUPPORTED_VERSIONS:
        raise SchemaError(
            f"{source}: schema_version {version!r} is not supported by this bench "
            f"(reads {', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade ondevice-bench"
        )
    try:
        return _RUN_ADAPTER.validate_python(data, context={RECORDED: True})
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
