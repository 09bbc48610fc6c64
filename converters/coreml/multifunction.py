"""A Core ML multifunction package: one base model and a set of LoRA adapters in one `.mlpackage`, one
function each, the weights they share stored once.

Every function is converted by the Core ML converter with one recipe (any Core ML variant of the catalog:
fp16, a weight compression; a decoder through the stateful path), each to a package of its own,
then joined by coremltools' `MultiFunctionDescriptor` and `save_multifunction`. That save de-duplicates
constants across functions (`common::const_deduplication`, `_deduplicate_const_across_functions`): a
constant whose value is identical in two functions is written once and both functions read it.

So the adapters are built **unfused**: the base's weights unchanged, the low-rank branch `B A x` beside
each adapted layer as consts and ops of its own (peft's LoRA layers, not merged). Then every function holds
the base's weights bit for bit and the package stores them once, plus each adapter's small matrices. A
fused (merged) adapter changes each adapted weight, so no two functions would share those; that is why a
module with merged LoRA layers, or with no LoRA layer at all (the output of `merge_and_unload`), is refused.
Weight compression is deterministic, so a compressed base weight is also identical across functions.

Multifunction models need iOS18 / macOS 15 (specification version 9, `save_multifunction` raises the
version to it): every function is converted at that target, so the separate packages written beside the
multifunction one are the same programs, and their sizes are a like-for-like comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.base import ConversionContext
from converters.coreml.convert import CoreMLConverter, import_coremltools
from profiles.catalog import Variant
from profiles.errors import ConfigError, ConversionError, ModelError, first_line
from profiles.zoo import LoadedModel

MULTIFUNCTION_TARGET = "iOS18"
PACKAGE = "model.mlpackage"
BASE_FUNCTION = "base"  # the base's function, the package's default


@dataclass(frozen=True)
class FunctionPackage:
    """One function's own package, converted with the recipe the multifunction package uses."""

    name: str
    path: Path
    size_bytes: int
    converter_path: str  # how coremltools took the module (`converters.coreml.convert`)


@dataclass(frozen=True)
class MultifunctionPackage:
    """The multifunction package and the separate packages of its functions (the base's first)."""

    path: Path
    size_bytes: int
    variant: str
    deployment_target: str
    base: FunctionPackage
    adapters: tuple[FunctionPackage, ...]

    @property
    def functions(self) -> tuple[str, ...]:
        return (self.base.name, *(a.name for a in self.adapters))

    @property
    def default_function(self) -> str:
        return self.base.name

    @property
    def full_models_bytes(self) -> int:
        """The adapters' separate packages together: N full models, each carrying the base's weights."""
        return sum(a.size_bytes for a in self.adapters)


def package_bytes(path: Path) -> int:
    """Bytes on disk of a package: every file under its directory."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _check_names(names: list[str]) -> None:
    """Function names become directory names of the separate packages and the `function_name` an app
    passes to Core ML: identifiers are safe in both."""
    if not names:
        raise ModelError("a multifunction package needs at least one adapter beside the base")
    for name in [BASE_FUNCTION, *names]:
        if not name.isidentifier():
            raise ModelError(f"function name {name!r} is not an identifier (letters, digits, underscores)")
    if BASE_FUNCTION in names:
        raise ModelError(f"adapter name {BASE_FUNCTION!r} is the base's function name")


def unfused_refusal(name: str, module: Any) -> str | None:
    """Why `module` is not an unfused peft LoRA model (so would share no adapted weight with the base), or None."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return "the adapters are peft LoRA models and peft is not installed (pip install peft)"
    layers = [m for m in module.modules() if isinstance(m, LoraLayer)]
    if not layers:
        return (
            f"adapter {name!r} has no peft LoRA layer: a merged model (merge_and_unload) shares no adapted "
            "weight with the base; pass the peft model itself"
        )
    if any(layer.merged for layer in layers):
        return (
            f"adapter {name!r} has merged LoRA layers: merged weights differ from the base's and are not "
            "shared; call unmerge_adapter() first"
        )
    return None


def unwrapped(module: Any) -> Any:
    """The model inside a `PeftModel` (LoRA layers injected), whose forward is the base's: a `PeftModel`
    forwards `*args`, which `torch.export` names `args_0`, where the base's function names its inputs."""
    get_base_model = getattr(module, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else module


def multifunction_variant(ct: Any, variant: Variant) -> Variant:
    """The variant's recipe at the multifunction target at least."""
    if variant.format != "coreml":
        raise ConfigError(f"variant {variant.name} is {variant.format}; a multifunction package is Core ML")
    target = variant.recipe.get("target", MULTIFUNCTION_TARGET)
    if getattr(ct.target, target) >= getattr(ct.target, MULTIFUNCTION_TARGET):
        return variant
    return dataclasses.replace(variant, recipe={**variant.recipe, "target": MULTIFUNCTION_TARGET})


def _convert_function(
    name: str, model: LoadedModel, variant: Variant, out_dir: Path, ctx: ConversionContext
) -> tuple[FunctionPackage, str]:
    """One function's own package; each gets a fresh context, since a context memoises one model's export."""
    directory = out_dir / "functions" / name
    directory.mkdir(parents=True)
    with ConversionContext(calibration=ctx.calibration, seed=ctx.seed, scratch_root=ctx.scratch_root) as own:
        converted = CoreMLConverter().convert(model, variant, directory, own)
    path = directory / converted.main_file
    package = FunctionPackage(name, path, package_bytes(path), converted.converter_path)
    return package, converted.deployment_target or variant.recipe["target"]


def build_multifunction(
    base: LoadedModel, adapters: Mapping[str, Any], variant: Variant, out: Path, ctx: ConversionContext | None = None
) -> MultifunctionPackage:
    """Convert the base and each adapter (unfused: see the module docstring) with `variant`'s recipe into
    `out/functions/NAME/model.mlpackage`, then join them into `out/model.mlpackage`, whose default
    function is the base's. An adapter, by its function name (an identifier), is a module with unmerged
    peft LoRA layers (a `PeftModel` or the model inside it) or a zero-argument callable building one, called
    only when its turn comes, so one adapted copy of the base is in memory at a time; it is put in eval
    mode and run on the base's example inputs. `out` must be empty or absent."""
    import torch

    ct = import_coremltools()
    _check_names(list(adapters))
    recipe = multifunction_variant(ct, variant)
    ctx = ctx if ctx is not None else ConversionContext()
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise ConfigError(f"{out} is not empty")
    for name, adapter in adapters.items():  # the modules at hand, before minutes of conversion
        if isinstance(adapter, torch.nn.Module) and (refusal := unfused_refusal(name, adapter)) is not None:
            raise ModelError(refusal)
    base_package, target = _convert_function(BASE_FUNCTION, base, recipe, out, ctx)
    packages = []
    for name, adapter in adapters.items():
        module = adapter if isinstance(adapter, torch.nn.Module) else adapter()
        if (refusal := unfused_refusal(name, module)) is not None:
            raise ModelError(refusal)
        adapted = LoadedModel(unwrapped(module).eval(), base.example_inputs, base.factory)
        packages.append(_convert_function(name, adapted, recipe, out, ctx)[0])
        del module, adapted
    desc = ct.utils.MultiFunctionDescriptor()
    for package in (base_package, *packages):
        desc.add_function(str(package.path), "main", package.name)
    desc.default_function_name = BASE_FUNCTION
    joined = out / PACKAGE
    try:
        ct.utils.save_multifunction(desc, str(joined))
    except Exception as exc:
        raise ConversionError(f"coremltools could not join the functions: {first_line(exc)}") from exc
    return MultifunctionPackage(joined, package_bytes(joined), variant.name, target, base_package, tuple(packages))


def function_names(spec: Any) -> list[str]:
    """The functions a Core ML spec declares; a single-function model has one, `main`."""
    return [f.name for f in spec.description.functions] or ["main"]


def default_function(spec: Any) -> str:
    return spec.description.defaultFunctionName or "main"


def core_ml_function_name(spec: Any, name: str | None) -> str | None:
    """The `function_name` Core ML is given for function `name` (None: the default): the default's own name
    for a multifunction model, None for a single-function one, which has no function names to give."""
    return (name or default_function(spec)) if spec.description.functions else None


def function_spec(spec: Any, name: str | None) -> Any:
    """A single-function view of `spec` for function `name` (None: the default): its description holds
    that function's inputs, outputs and states, which a multifunction spec keeps per function only (its
    top-level inputs are empty), so code that reads `spec.description.input` reads the right ones."""
    wanted = name or default_function(spec)
    if wanted not in function_names(spec):
        raise ConfigError(f"the model has no function {wanted!r}; it has {', '.join(function_names(spec))}")
    if not spec.description.functions:
        return spec
    from coremltools.proto import Model_pb2

    chosen = next(f for f in spec.description.functions if f.name == wanted)
    view = Model_pb2.Model()
    view.CopyFrom(spec)
    description = view.description
    description.ClearField("functions")
    description.ClearField("defaultFunctionName")
    for field in ("input", "output", "state"):
        description.ClearField(field)
        getattr(description, field).extend(getattr(chosen, field))
    return view
