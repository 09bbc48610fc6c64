"""Profiles: TOML parsed with tomllib and validated by pydantic in one step, errors in one line."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from profiles.catalog import VARIANTS
from profiles.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Device = Literal["cpu", "gpu", "ane", "all"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Measure(_Strict):
    budget_s: float = Field(3.0, gt=0, description="sampling seconds per case, split over its processes")
    processes: int = Field(3, ge=1, le=100, description="fresh worker processes per case")
    warmup: int = Field(10, ge=0, description="calls before sampling; the same for every variant")
    min_sample_ms: float = Field(1.0, gt=0, description="a sample batches calls until it lasts this long")
    timeout_s: float = Field(300.0, gt=0, description="a worker running longer is killed and its case fails")
    threads: int = Field(1, ge=0, description="intra-op threads; 0 means the runtime's own default")
    seed: int = Field(0, description="seeds the interleaved process order and synthetic inputs")


class Gate(_Strict):
    """Parity thresholds; an unset key is not checked."""

    max_abs_err: float | None = Field(None, gt=0)
    cosine_min: float | None = Field(None, ge=-1, le=1)
    snr_db_min: float | None = None
    top1_agreement_min: float | None = Field(None, ge=0, le=1)
    accuracy_ratio_min: float | None = Field(None, ge=0)
    cosine_mean_min: float | None = Field(None, ge=-1, le=1)
    retrieval_agreement_min: float | None = Field(None, ge=0, le=1)


def _default_gates() -> dict[str, Gate]:
    return {
        "fp32": Gate(max_abs_err=1e-3, cosine_min=0.99999),
        "fp16": Gate(cosine_min=0.999, snr_db_min=40.0),
        "int8": Gate(top1_agreement_min=0.9, accuracy_ratio_min=0.99, cosine_mean_min=0.98),
        "int4": Gate(top1_agreement_min=0.8, accuracy_ratio_min=0.99, cosine_mean_min=0.98),
        "palettized": Gate(top1_agreement_min=0.8, accuracy_ratio_min=0.99, cosine_mean_min=0.98),
    }


Family = Literal["fp32", "fp16", "int8", "int4", "palettized"]


class Parity(_Strict):
    samples: int = Field(64, ge=1, description="parity inputs per model (dataset rows, else synthetic)")
    enforce: bool = Field(True, description="a failed gate makes the exit code 1; false: report only")
    gates: dict[Family, Gate] = Field(default_factory=_default_gates)
    models: dict[str, dict[Family, Gate]] = Field(
        default_factory=dict, description='per-model overrides: [parity.models."NAME".FAMILY]'
    )

    @field_validator("gates", mode="before")
    @classmethod
    def _keep_other_families(cls, value: Any) -> Any:
        """A profile's [parity.gates.FAMILY] table replaces that family's default, not the others'."""
        if isinstance(value, dict):
            return {**{k: g.model_dump() for k, g in _default_gates().items()}, **value}
        return value

    def gate_for(self, model: str, family: str) -> dict[str, float]:
        """The family's gate with the model's overrides applied key by key; unset keys are not checked."""
        merged = self.gates[family].model_dump() if family in self.gates else {}  # type: ignore[index]
        override = self.models.get(model, {}).get(family)  # type: ignore[call-overload]
        if override is not None:
            merged.update({k: v for k, v in override.model_dump().items() if v is not None})
        return {k: v for k, v in merged.items() if v is not None}


class Convert(_Strict):
    calibration_samples: int = Field(
        32, ge=1, description="inputs for calibrated recipes (int8 static, W8A8), apart from the parity inputs"
    )


class Profile(_Strict):
    description: str = ""
    models: list[str] = Field(min_length=1)
    variants: list[str] = Field(default_factory=lambda: ["torch-fp32", "onnx-fp32"], min_length=1)
    devices: list[Device] = Field(default_factory=lambda: ["cpu"], min_length=1)
    measure: Measure = Field(default_factory=Measure)
    convert: Convert = Field(default_factory=Convert)
    parity: Parity = Field(default_factory=Parity)

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, value: list[str]) -> list[str]:
        if value == ["all"]:
            return list(VARIANTS)
        for name in value:
            if name not in VARIANTS:
                raise ValueError(f"unknown variant '{name}'; allowed: all, {', '.join(VARIANTS)}")
        return value


class ResolvedProfile(BaseModel):
    name: str
    source: str
    profile: Profile


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
    if builtin.is_file():
        text, source, name = builtin.read_text(), f"profiles/{BUILTIN_DIR}/{name_or_path}.toml", name_or_path
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(
                f"profile '{name_or_path}': no such built-in profile ({', '.join(builtin_profiles())}) and no such file"
            )
        text, source, name = path.read_text(), str(path), path.stem
    try:
        return name, source, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc


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


def load_profile(name_or_path: str, overrides: dict[str, Any] | None = None) -> ResolvedProfile:
    """Read a built-in profile or a TOML file, apply CLI overrides, validate; `ConfigError` in one line."""
    name, source, data = _read(name_or_path)
    for dotted, value in (overrides or {}).items():
        section = data
        *parents, leaf = dotted.split(".")
        for parent in parents:
            section = section.setdefault(parent, {})
        section[leaf] = value
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        first = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        raise ConfigError(f"{source}: {_describe(dict(first), data)}") from exc
    return ResolvedProfile(name=name, source=source, profile=profile)
