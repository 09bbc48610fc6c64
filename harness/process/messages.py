"""What crosses the process boundary: one dataclass per message a worker sends its parent.

They pickle as they are (every field is a plain value, a list, a str-keyed dict of them, or a typed
record of `harness.results.schema` or of this module): the child builds the records the results hold,
and the parent uses them as they come.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.results.schema import (
    AdapterRecord,
    ArtifactInfo,
    DiagnosisReport,
    EnergyStats,
    JsonValue,
    MemoryStats,
    ParityResult,
    Status,
    ThermalState,
)


@dataclass(frozen=True)
class WorkerError:
    """The target raised: the exception's type and first line (the traceback is in the worker's log)."""

    error: str


@dataclass(frozen=True)
class Ready:
    """The child is up (interpreter started, target unpickled): its wall-clock time, for the start-up
    figure of `harness.results.schema.ProcessTiming`. The parent keeps it out of the outcome's messages."""

    at: float


@dataclass(frozen=True)
class Stage:
    """What a preparation worker is doing now; `variant` while it converts one."""

    stage: str
    variant: str | None = None


@dataclass(frozen=True)
class ModelChecked:
    """A user model's module imported and named a callable factory."""

    ref: str


@dataclass(frozen=True)
class ModelRejected:
    """A user model's reference cannot be used: the module does not import, or has no such factory."""

    message: str


@dataclass(frozen=True)
class PreparedModel:
    """A model built and its reference outputs saved (paths are empty for `bench convert`)."""

    fingerprint: str
    inputs_path: str
    parity_path: str
    weights_path: str
    parity_source: str
    task: str
    adapter: AdapterRecord | None = None  # a `BASE+ADAPTER` model: what the adapter adds, its task metric


@dataclass(frozen=True)
class ArtifactBuilt:
    """One variant's conversion: `info` is what was built when status is ok."""

    variant: str
    status: Status
    reason: str | None = None
    info: ArtifactInfo | None = None


@dataclass(frozen=True)
class Diagnosis:
    diagnosis: DiagnosisReport


@dataclass(frozen=True)
class PairedMeasured:
    """One paired process: the arms' creation order (indices), calls per block of each arm, and every
    block of each arm in time order (milliseconds per call). Blocks come in rounds: a random order of
    the arms, then its mirror image, so a round holds two consecutive blocks of each arm's list, and
    2 * `reference_blocks` (the plan's) of arm 0, the reference."""

    created: list[int]
    calls: list[int]
    blocks_ms: list[list[float]]
    rounds: int
    lead_in: list[int]  # untimed calls of each arm before each of its blocks
    load_at: float = 0.0  # wall-clock time the first arm's load began (imports done): ends the start-up


@dataclass(frozen=True)
class PairedRefused:
    """An arm of a paired process that cannot be paired (its index in the plan's arms, and why)."""

    arm: int
    reason: str


@dataclass(frozen=True)
class Unavailable:
    """The runtime declined the requested device when loading: the case is skipped with this reason."""

    reason: str


@dataclass(frozen=True)
class KvCache:
    """A decoder's KV cache as its backend holds it (`harness.generation.measure.kv_cache_record`): a
    stateful Core ML decoder's state, allocated whole; or graph inputs and outputs, so many bytes a token."""

    kind: str
    state_bytes: int | None = None
    bytes_per_token: int | None = None


@dataclass(frozen=True)
class GenerationTiming:
    """One generative process's timings, each keyed by prompt length: times to first token and decode
    steps (ms); peak memory over the whole generation and over its decode phase, keyed by context length
    (prompt + token budget); CPU ms per decoded token; the KV cache."""

    lengths: list[int]
    new_tokens: int
    rounds: int
    ttft_ms: dict[int, list[float]]
    decode_ms: dict[int, list[float]]
    peak_bytes: dict[int, int]
    decode_peak_bytes: dict[int, int]
    decode_cpu_ms_per_token: float
    kv: KvCache
    skipped_prompt_lengths: dict[str, str] = field(default_factory=dict)  # length -> why it was not run


@dataclass(frozen=True)
class Measured:
    """One unpaired measurement process of one case. `runtime` and `placement` are what the session
    reports of itself, each in its backend's own terms (`{"error": ...}` where reading it failed)."""

    cold_ms: float
    warm_ms: float
    first_inference_ms: float
    calls_per_sample: int
    samples_ms: list[float]
    memory: MemoryStats
    energy: EnergyStats
    parity: ParityResult | None
    runtime: dict[str, JsonValue]
    thermal: str | None
    thermal_state: ThermalState
    placement: dict[str, JsonValue]
    generation: GenerationTiming | None = None  # decoders
    load_at: float = 0.0  # wall-clock time the cold load began (imports done): ends the start-up
    sampling_s: float = 0.0  # wall time inside timed sampling


@dataclass(frozen=True)
class ProgramStaged:
    """One ExecuTorch program staged for a device (`harness.orchestrate.staging`): its path, or why it could not be."""

    index: int
    path: str | None
    error: str | None = None
