"""Expand a profile into cases, and refuse on this host what cannot run here, with the reason."""

from __future__ import annotations

from dataclasses import dataclass

from harness.backends.registry import BACKENDS
from profiles.catalog import FORMAT_BACKEND, VARIANTS, Variant
from profiles.errors import NothingToRun
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


def device_reasons(backend: str, devices: list[str]) -> dict[str, str | None]:
    instance = BACKENDS[backend]()
    return {device: instance.available(device) for device in devices}


def plan(profile: Profile) -> list[Case]:
    """Every model x variant x device; raises `ModelError` for an unknown model and `NothingToRun`
    when this host can run none of the cases."""
    models = [resolve_model(ref) for ref in profile.models]
    backends = sorted({FORMAT_BACKEND[VARIANTS[v].format] for v in profile.variants})
    reasons = {b: device_reasons(b, list(profile.devices)) for b in backends}
    cases = []
    for model in models:
        for name in profile.variants:
            variant = VARIANTS[name]
            backend = FORMAT_BACKEND[variant.format]
            for device in profile.devices:
                cases.append(Case(model, variant, device, backend, reasons[backend][device]))
    if all(c.skip_reason for c in cases):
        why = sorted({f"{c.backend} on {c.device}: {c.skip_reason}" for c in cases})
        raise NothingToRun(f"nothing can run on this host: {'; '.join(why)}")
    return cases
