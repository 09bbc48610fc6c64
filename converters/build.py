"""Build one model x variant artifact: from the cache when intact, else by its format's converter."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import replace
from typing import Any

from converters.base import ConversionContext, VariantSkipped
from converters.cache import ArtifactCache, arrays_sha256, cache_key, explain_miss, key_inputs
from converters.fingerprint import Fingerprint
from converters.registry import CONVERTERS
from profiles.catalog import Variant
from profiles.errors import ConversionError, first_line
from profiles.zoo import LoadedModel

__all__ = ["build_artifact"]

log = logging.getLogger(__name__)

HIT = "hit: same model fingerprint, recipe, calibration inputs and library versions"


def build_artifact(
    model: LoadedModel, fingerprint: Fingerprint, variant: Variant, ctx: ConversionContext, cache: ArtifactCache
) -> dict[str, Any]:
    """Artifact metadata (keys of `harness.results.schema.ArtifactInfo`, plus `cache_explanation`: why it hit or
    missed); raises `ConversionError` or `VariantSkipped`."""
    extra = {"calibration": arrays_sha256(ctx.calibration)} if variant.calibrated else {}
    inputs = key_inputs(fingerprint, variant, extra)
    key = cache_key(inputs)
    stored, damage = cache.examine(key)
    if stored is not None and "skipped" in stored:
        raise VariantSkipped(stored["skipped"], about_model=True)
    if stored is not None:
        return {**stored, "cache_hit": True, "cache_explanation": HIT}
    if damage is not None:
        explanation = f"miss: the cached artifact was damaged ({damage}): rebuilt"
    else:
        explanation = explain_miss(inputs, fingerprint, cache.latest_for(fingerprint.name, variant.name))
    about = {"key": inputs, "model": fingerprint.summary()}
    converter = CONVERTERS[variant.format]()
    staging = cache.staging(key)
    try:
        started = time.perf_counter()
        try:
            source, context = recipe_model(model, variant, ctx)
            converted = converter.convert(source, variant, staging, context)
        except VariantSkipped as skip:
            if skip.about_model:
                cache.store_skip(key, str(skip), about)
            raise
        except ConversionError:
            raise
        except Exception as exc:  # the plug-in boundary: a converter's failure fails its variant, not the run
            log.exception("converting %s failed", variant.name)
            raise ConversionError(first_line(exc)) from exc
        elapsed = time.perf_counter() - started
        ops, weights = converter.inspect(staging / converted.main_file)
        info = cache.store(
            key,
            staging,
            converted.main_file,
            {
                "conversion_s": elapsed,
                "converter_path": converted.converter_path,
                "opset": converted.opset,
                "deployment_target": converted.deployment_target,
                "op_histogram": ops,
                "weight_bytes_by_dtype": weights,
                "notes": converted.notes,
            },
            about,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**info, "cache_hit": False, "cache_explanation": explanation}


def recipe_model(model: LoadedModel, variant: Variant, ctx: ConversionContext) -> tuple[LoadedModel, ConversionContext]:
    """What a recipe converts: the model (an adapter model's fused module) or, for an unfused-adapter recipe,
    the base with its LoRA branch kept (`profiles.zoo.adapters`), with a memo of its own (the converters
    keep one export per model in `ctx.scratch`, and the two must not share it)."""
    if not variant.unfused_adapter:
        return model, ctx
    if model.unfused is None:
        raise VariantSkipped(
            f"{variant.name} keeps a LoRA adapter's branch: it converts BASE+ADAPTER models, and this one has none",
            about_model=True,
        )
    view = LoadedModel(model.unfused, model.example_inputs, model.factory, peft=model.peft)
    return view, replace(ctx, scratch=ctx.scratch.setdefault("lora-unfused", {}))
