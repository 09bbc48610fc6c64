"""Expand a profile into cases, and refuse what cannot run where the executor runs jobs, with the reason."""

from __future__ import annotations

from dataclasses import dataclass

from harness.backends.registry import backends, format_backend
from harness.process.executor import LOCAL, Executor
from profiles.catalog import VARIANTS, Variant
from profiles.errors import ConfigError, NothingToRun
from profiles.schema import Profile
from profiles.zoo import ModelSpec, resolve_model


@dataclass
class Case:
    model: ModelSpec
    variant: Variant
    device: str
    backend: str
    skip_reason: str | None = None

    @property
    def label(self) -> str:
        return f"{self.model.name} {self.variant.name} {self.device}"


def device_reasons(backend: str, devices: list[str], executor: Executor = LOCAL) -> dict[str, str | None]:
    """Why each device cannot run the backend's cases: this host's backend says, or, for an executor that
    runs jobs elsewhere (a cluster), the executor (`Executor.device_reason`)."""
    instance = backends()[backend]()
    return {d: executor.device_reason(backend, d, lambda d=d: instance.available(d)) for d in devices}


def shard_of(cases: list[Case], shard: tuple[int, int]) -> list[Case]:
    """The i-th of n slices (1-based): cases sorted by (model, variant, device), every n-th taken, so
    the slices of one profile cover every case exactly once on any machine."""
    index, count = shard
    ordered = sorted(cases, key=lambda c: (c.model.name, c.variant.name, c.device))
    return [case for position, case in enumerate(ordered) if position % count == index - 1]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 2/3")
    return index, count


def plan(profile: Profile, shard: tuple[int, int] | None = None, executor: Executor = LOCAL) -> list[Case]:
    """Every model x variant x device (or one shard of them; none for an empty shard, which is not a
    mistake: `empty_shard`). Raises `ModelError` for an unknown model and `NothingToRun` when this host
    can run none of the cases."""
    models = [resolve_model(ref) for ref in profile.models]
    names = sorted({format_backend(VARIANTS[v].format) for v in profile.variants})
    reasons = {b: device_reasons(b, list(profile.devices), executor) for b in names}
    cases = []
    for model in models:
        for name in profile.variants:
            variant = VARIANTS[name]
            backend = format_backend(variant.format)
            for device in profile.devices:
                cases.append(Case(model, variant, device, backend, reasons[backend][device]))
    if shard is not None:
        cases = shard_of(cases, shard)
        if not cases:
            return []
    if all(c.skip_reason for c in cases):
        why = sorted({f"{c.backend} on {c.device}: {c.skip_reason}" for c in cases})
        raise NothingToRun(f"nothing can run on this host: {'; '.join(why)}")
    return cases


def empty_shard(profile: Profile, shard: tuple[int, int]) -> str:
    """Why a shard that `plan` left empty has nothing to do (a run then exits 0)."""
    total = len(profile.models) * len(profile.variants) * len(profile.devices)
    return f"shard {shard[0]}/{shard[1]} is empty: this profile has only {total} cases"
