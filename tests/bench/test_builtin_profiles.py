"""Every built-in profile exits 0 on this host with the smallest budgets: a variant this host cannot run
is `skipped` with its reason, never `failed` (the `genai` profile once broke when ExecuTorch variants
joined `all`, and no test ran it). `smoke` runs in every CI run; the profiles whose conversions
take minutes on 2 cores (`ci`: 3 min, `default`, `genai`, `llm`, `adapters`: its decoder adapters' ExecuTorch
programs) are `slow`; `adapters`' path (`BASE+ADAPTER`, fused and unfused, paired, the adapters table) runs
in CI in tests/bench/test_adapters_run.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiles.schema import builtin_profiles
from tests.conftest import bench

MINUTES_TO_CONVERT = {"ci", "default", "genai", "llm", "adapters"}


def _profiles() -> list[object]:
    return [
        pytest.param(name, marks=pytest.mark.slow) if name in MINUTES_TO_CONVERT else name
        for name in sorted(builtin_profiles())
    ]


@pytest.mark.parametrize("name", _profiles())
def test_a_built_in_profile_exits_0_with_every_case_ok_or_skipped(name: str, tmp_path: Path) -> None:
    if name == "llm":
        pytest.importorskip("gguf", reason="the llm extra is not installed (pip install 'ondevice-bench[llm]')")
    out = tmp_path / "run.json"
    proc = bench(
        "run", name, "--processes", "1", "--budget", "0.2", "--pair-budget", "2",
        "--json", str(out), "--db", f"sqlite:///{tmp_path / 's.sqlite'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert results and all(r["status"] in {"ok", "skipped"} for r in results), [
        (r["variant"], r["status"], r["reason"]) for r in results if r["status"] not in {"ok", "skipped"}
    ]
    assert all(r["reason"] for r in results if r["status"] == "skipped")
