from __future__ import annotations

from pathlib import Path

import pytest

from profiles.catalog import VARIANTS
from profiles.errors import ConfigError
from profiles.schema import builtin_profiles, load_profile


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return str(path)


def test_builtin_profiles_load_and_validate() -> None:
    assert {"smoke", "default", "ci"} <= set(builtin_profiles())
    for name in builtin_profiles():
        resolved = load_profile(name)
        assert resolved.name == name and resolved.profile.models
    smoke = load_profile("smoke").profile
    assert smoke.models == ["digits_cnn"] and smoke.variants == ["torch-fp32", "onnx-fp32"]


def test_variants_all_expands_to_the_catalog() -> None:
    """`all` is every recipe; the unfused-adapter ones only for a profile with a `BASE+ADAPTER` model."""
    assert load_profile("default").profile.variants == [n for n, v in VARIANTS.items() if not v.unfused_adapter]
    assert load_profile("adapters", {"variants": ["all"]}).profile.variants == list(VARIANTS)


def test_overrides_replace_profile_keys() -> None:
    resolved = load_profile("smoke", {"models": ["vit_small"], "measure.budget_s": 0.5, "devices": ["gpu"]})
    assert resolved.profile.models == ["vit_small"]
    assert resolved.profile.measure.budget_s == 0.5
    assert resolved.profile.devices == ["gpu"]


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, 'models = ["digits_cnn"]\n[measure]\nbudgt_s = 3\n')
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(path) and "measure.budgt_s" in message
    assert "allowed: budget_s, processes" in message and "\n" not in message


def test_unknown_key_in_a_gate_table_lists_gate_keys(tmp_path: Path) -> None:
    path = write(tmp_path, 'models = ["digits_cnn"]\n[parity.gates.fp16]\ncosine = 0.9\n')
    with pytest.raises(ConfigError, match=r"parity\.gates\.fp16\.cosine: unknown key 'cosine'; allowed: max_abs_err"):
        load_profile(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('models = ["digits_cnn"]\ndevices = ["tpu"]\n', r"devices\[0\] = 'tpu': .*'cpu', 'gpu', 'ane' or 'all'"),
        ('models = ["digits_cnn"]\nvariants = ["onnx-fp33"]\n', r"unknown variant 'onnx-fp33'; allowed: all, "),
        (
            'models = ["digits_cnn"]\n[measure]\nprocesses = 0\n',
            r"measure\.processes = 0: .*greater than or equal to 1",
        ),
        ("models = []\n", r"models = \[\]: "),
        ('models = ["a"\n', r"not valid TOML"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        load_profile(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_profile_lists_builtins() -> None:
    with pytest.raises(ConfigError, match=r"no such built-in profile .*smoke"):
        load_profile("does-not-exist")


def test_per_model_gate_overrides_apply_key_by_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'models = ["vit_small", "digits_cnn"]\n'
        '[parity.models."vit_small".int8]\ntop1_agreement_min = 0.7\n'
        "[parity.gates.fp16]\ncosine_min = 0.99\n",
    )
    parity = load_profile(path).profile.parity
    defaults = {"accuracy_ratio_min": 0.99, "cosine_mean_min": 0.98}
    assert parity.gate_for("vit_small", "int8") == {"top1_agreement_min": 0.7, **defaults}
    assert parity.gate_for("digits_cnn", "int8") == {"top1_agreement_min": 0.9, **defaults}
    assert parity.gate_for("digits_cnn", "fp16") == {"cosine_min": 0.99}  # a table replaces the family default


def test_override_for_an_unknown_family_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'models = ["vit_small"]\n[parity.models."vit_small".int3]\ntop1_agreement_min = 0.7\n')
    expected = r"parity\.models\.vit_small: unknown table 'int3'; allowed: 'fp32', 'fp16', 'int8', 'int4' or"
    with pytest.raises(ConfigError, match=expected):
        load_profile(path)
