"""Profiles: TOML parsed with tomllib and validated by pydantic in one step, errors in one line."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from profiles.catalog import VARIANTS, all_variants
from profiles.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DeviceChoice = Literal["cpu", "gpu", "ane", "all"]  # `Device` or "all": one Literal, so a bad value lists all four

RECORDED = "recorded"  # validation context of a profile read back from a results file


def _recorded(info: ValidationInfo) -> bool:
    """True while validating a profile a results file recorded: it was valid for the bench that wrote it,
    so keys, variants or families that bench knew and this one does not are dropped or kept, never an
    error (schema_version 1 adds keys freely)."""
    return bool(info.context and info.context.get(RECORDED))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_when_recorded(cls, data: Any, info: ValidationInfo) -> Any:
        if _recorded(info) and isinstance(data, dict):
            return {key: value for key, value in data.items() if key in cls.model_fields}
        return data


class Measure(_Strict):
    budget_s: float = Field(
        3.0, gt=0, le=3600, allow_inf_nan=False, description="sampling seconds per case, split over its processes"
    )
    processes: StrictInt = Field(3, ge=1, le=100, description="fresh worker processes per case")
    warmup: StrictInt = Field(10, ge=0, le=100_000, description="calls before sampling; the same for every variant")
    min_sample_ms: float = Field(
        1.0, gt=0, le=10_000, allow_inf_nan=False, description="a sample batches calls until it lasts this long"
    )
    timeout_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="a worker running longer is killed, its case fails (converting: each step, per variant)",
    )
    threads: StrictInt = Field(1, ge=0, le=1024, description="intra-op threads; 0 means the runtime's own default")
    seed: StrictInt = Field(0, ge=0, lt=2**32, description="seeds the interleaved process order and synthetic inputs")


class Paired(_Strict):
    """Paired A/B: the latency ratios of the vs-reference column and of `--baseline` (harness.pairing.series)."""

    enabled: StrictBool = Field(True, description="pair each variant with the model's reference on its device")
    arm_s: float = Field(
        0.5, gt=0, le=600, allow_inf_nan=False, description="sampling seconds each arm gets in one paired process"
    )
    max_s: float = Field(
        60.0, gt=0, le=86_400, allow_inf_nan=False, description="wall-clock budget of one comparison's processes"
    )
    threshold_pct: float = Field(
        1.0, gt=0, lt=100, allow_inf_nan=False, description="a latency change smaller than this is 'no change'"
    )
    lead_in_ms: float = Field(
        1.0, ge=0, le=1000, allow_inf_nan=False, description="untimed calls before each block of different variants"
    )
    precision_pct: float | None = Field(
        None,
        gt=0,
        lt=100,
        allow_inf_nan=False,
        description="after the verdict, add processes until the interval is within +/- this percent (budget allowing)",
    )


class Gate(_Strict):
    """Parity thresholds; an unset key is not checked."""

    max_abs_err: float | None = Field(None, gt=0)
    cosine_min: float | None = Field(None, ge=-1, le=1)
    snr_db_min: float | None = None
    top1_agreement_min: float | None = Field(None, ge=0, le=1)
    accuracy_ratio_min: float | None = Field(None, ge=0)
    cosine_mean_min: float | None = Field(None, ge=-1, le=1)
    retrieval_agreement_min: float | None = Field(None, ge=0, le=1)
    # decoders (task "generation"); unset keys take harness.generation.measure.DEFAULT_GATES for the family
    full_match_min: float | None = Field(
        None, ge=0, le=1, description="share of held-out prompts whose greedy continuation matches torch's in full"
    )
    first_divergence_median_min: float | None = Field(None, ge=0, description="tokens before the first divergence")
    next_token_agreement_min: float | None = Field(None, ge=0, le=1)
    perplexity_ratio_max: float | None = Field(None, ge=1)


def _default_gates() -> dict[str, Gate]:
    return {
        "fp32": Gate(max_abs_err=1e-3, cosine_min=0.99999),
        "fp16": Gate(cosine_min=0.999, snr_db_min=40.0),
        "int8": Gate(top1_agreement_min=0.9, accuracy_ratio_min=0.99, cosine_mean_min=0.98),
        "int4": Gate(top1_agreement_min=0.8, accuracy_ratio_min=0.99, cosine_mean_min=0.98),
        "palettized": Gate(top1_agreement_min=0.8, accuracy_ratio_min=0.99, cosine_mean_min=0.98),
    }


Family = Literal["fp32", "fp16", "int8", "int4", "palettized"]


def _known_families(gates: Any, info: ValidationInfo) -> Any:
    """A recorded profile's gates without the families this bench does not know."""
    if _recorded(info) and isinstance(gates, dict):
        return {family: gate for family, gate in gates.items() if family in get_args(Family)}
    return gates


class Parity(_Strict):
    samples: StrictInt = Field(
        64, ge=1, le=100_000, description="parity inputs per model (dataset rows, else synthetic)"
    )
    enforce: StrictBool = Field(True, description="a failed gate makes the exit code 1; false: report only")
    gates: dict[Family, Gate] = Field(default_factory=_default_gates)
    models: dict[str, dict[Family, Gate]] = Field(
        default_factory=dict, description='per-model overrides: [parity.models."NAME".FAMILY]'
    )

    @field_validator("gates", mode="before")
    @classmethod
    def _keep_other_families(cls, value: Any, info: ValidationInfo) -> Any:
        """A profile's [parity.gates.FAMILY] table replaces that family's default, not the others'."""
        if isinstance(value, dict):
            return {**{k: g.model_dump() for k, g in _default_gates().items()}, **_known_families(value, info)}
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _known_override_families(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict):
            return {model: _known_families(gates, info) for model, gates in value.items()}
        return value

    def gate_for(self, model: str, family: str) -> dict[str, float]:
        """The family's gate with the model's overrides applied key by key; unset keys are not checked."""
        merged = self.gates[family].model_dump() if family in self.gates else {}  # type: ignore[index]
        override = self.models.get(model, {}).get(family)  # type: ignore[call-overload]
        if override is not None:
            merged.update({k: v for k, v in override.model_dump().items() if v is not None})
        return {k: v for k, v in merged.items() if v is not None}


class Convert(_Strict):
    calibration_samples: StrictInt = Field(
        32, ge=1, le=100_000, description="inputs for calibrated recipes (int8 static, W8A8), apart from parity's"
    )
    jobs: StrictInt = Field(2, ge=1, le=64, description="models converted at once, each in its own worker process")


class Generation(_Strict):
    """How decoders are measured: the same greedy work for every variant."""

    prompt_lengths: list[StrictInt] = Field(
        default_factory=lambda: [16, 128, 512], min_length=1, description="time to first token at these prompts"
    )
    new_tokens: StrictInt = Field(64, ge=2, le=100_000, description="the token budget of every greedy generation")
    parity_prompt_tokens: StrictInt = Field(32, ge=1, le=100_000, description="held-out prompt length for parity")
    parity_text_tokens: StrictInt = Field(256, ge=2, le=100_000, description="held-out text window for perplexity")

    @field_validator("prompt_lengths")
    @classmethod
    def _positive_lengths(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value):
            raise ValueError("prompt lengths must be >= 1")
        return sorted(set(value))


class Decide(_Strict):
    """Limits a variant must meet to be a candidate for shipping, beside its parity gate; unset: no limit.
    Each is what a product requirement states (an app-size budget, a memory ceiling, a latency target
    relative to today's model, an accuracy floor relative to it)."""

    max_size_mb: float | None = Field(None, gt=0, description="artifact size on disk, MB")
    max_peak_memory_mb: float | None = Field(None, gt=0, description="peak resident memory while measured, MB")
    max_latency_ratio: float | None = Field(None, gt=0, description="paired latency ratio to the reference")
    min_accuracy_ratio: float | None = Field(
        None, gt=0, description="task metric (accuracy, agreement, cosine) over the reference's"
    )


class Profile(_Strict):
    description: str = ""
    models: list[str] = Field(min_length=1)
    variants: list[str] = Field(default_factory=lambda: ["torch-fp32", "onnx-fp32"], min_length=1)
    devices: list[DeviceChoice] = Field(default_factory=lambda: ["cpu"], min_length=1)
    measure: Measure = Field(default_factory=Measure)
    paired: Paired = Field(default_factory=Paired)
    convert: Convert = Field(default_factory=Convert)
    parity: Parity = Field(default_factory=Parity)
    generation: Generation = Field(default_factory=Generation)
    decide: Decide = Field(default_factory=Decide)

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if _recorded(info):
            return value
        if value == ["all"]:
            return all_variants(info.data.get("models") or [])
        for name in value:
            if name not in VARIANTS:
                raise ValueError(f"unknown variant '{name}'; allowed: all, {', '.join(VARIANTS)}")
        return _unique(value)

    @field_validator("models", "devices")
    @classmethod
    def _no_repeats(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return value if _recorded(info) else _unique(value)


def _unique(values: list[str]) -> list[str]:
    """The list itself; a name given twice is a mistake (it would be measured twice under one label)."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} given more than once; list each once")
    return values


class ResolvedProfile(BaseModel):
    """A validated profile with where it came from. A results file records it flat, `name` and `source`
    beside the profile's own keys (`{"name", "source", "models", ...}`): one shape to write and read."""

    model_config = ConfigDict(frozen=True)

    name: str
    source: str
    profile: Profile

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        """The recorded shape nested: a profile has no key `profile`, so a dict without one is flat."""
        if isinstance(data, dict) and "profile" not in data:
            rest = {key: value for key, value in data.items() if key not in ("name", "source")}
            return {"name": data.get("name", ""), "source": data.get("source", ""), "profile": rest}
        return data

    @model_serializer(mode="wrap")
    def _to_flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        nested = handler(self)
        return {"name": nested["name"], "source": nested["source"], **nested["profile"]}


BUILTIN_DIR = "builtin"


def builtin_profiles() -> dict[str, str]:
    """Built-in profile names and their descriptions."""
    names = {}
    for entry in sorted(resources.files("profiles").joinpath(BUILTIN_DIR).iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text())
            names[entry.name[: -len(".toml")]] = str(data.get("description", ""))
    return names


def _read(name_or_path: str) -> tuple[str, str, dict[str, Any]]:
    builtin = resources.files("profiles").joinpath(BUILTIN_DIR, f"{name_or_path}.toml")
    if "/" not in name_or_path and builtin.is_file():
        text, source, name = builtin.read_text(), f"profiles/{BUILTIN_DIR}/{name_or_path}.toml", name_or_path
    else:
        path = Path(name_or_path)
        if path.is_dir():
            raise ConfigError(f"profile {name_or_path}: is a directory; give a TOML file, e.g. {path / 'profile.toml'}")
        if not path.is_file():
            raise ConfigError(
                f"profile '{name_or_path}': no such built-in profile ({', '.join(builtin_profiles())}) and no such file"
            )
        source, name = str(path), path.stem
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the profile: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not a TOML profile (not UTF-8 text at byte {exc.start})") from exc
    try:
        return name, source, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{source}: not a profile (nested too deeply)") from exc


def _owner(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model class that holds the key at `loc` (walking through dict-valued fields)."""
    owner: Any = Profile
    for part in loc:
        if isinstance(owner, type) and issubclass(owner, BaseModel):
            owner = owner.model_fields[str(part)].annotation
        else:  # a dict[..., Model] field: the part is a key of it
            owner = get_args(owner)[-1]
    return owner


def _describe(error: dict[str, Any], data: dict[str, Any]) -> str:
    loc = error["loc"]
    if loc and loc[-1] == "[key]":  # a table name that is not allowed, e.g. an unknown gate family
        where = ".".join(str(part) for part in loc[:-2])
        return f"{where}: unknown table '{error.get('input')}'; {error['msg'].replace('Input should be', 'allowed:')}"
    key = ".".join(str(part) if isinstance(part, str) else f"[{part}]" for part in loc).replace(".[", "[")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key '{loc[-1]}'; allowed: {', '.join(_owner(loc[:-1]).model_fields)}"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key} = {error.get('input')!r}: {message}"


def load_profile(
    name_or_path: str, overrides: dict[str, Any] | None = None, flags: dict[str, str] | None = None
) -> ResolvedProfile:
    """Read a built-in profile or a TOML file, apply CLI overrides, validate; `ConfigError` in one line.

    `flags` names the command-line flag that set each override key (`measure.budget_s` -> `--budget`):
    a bad value that came from a flag is blamed on the flag, not on the profile file that never held it."""
    name, source, data = _read(name_or_path)
    for dotted, value in (overrides or {}).items():
        section = data
        *parents, leaf = dotted.split(".")
        for depth, parent in enumerate(parents):
            section = section.setdefault(parent, {})
            if not isinstance(section, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(f"{source}: {where} = {section!r}: expected a table ([{where}]) of keys")
        section[leaf] = value
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        first = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        dotted = ".".join(str(part) for part in first["loc"])
        flag = next(
            (
                flags[key]
                for key in (overrides or {})
                if key in (flags or {}) and (dotted == key or dotted.startswith(f"{key}."))
            ),
            None,
        )
        where = f"{flag} (overriding {source})" if flag else source
        raise ConfigError(f"{where}: {_describe(dict(first), data)}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{source}: not a profile (nested too deeply)") from exc
    return ResolvedProfile(name=name, source=source, profile=profile)
