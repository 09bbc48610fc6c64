"""The command line end to end: real workers, real runtimes, the results file on disk."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from profiles.catalog import VARIANTS
from tests.conftest import CONTRACT_RESULT_KEYS, SmokeRun, bench

LATENCY_KEYS = {"median", "mean", "std", "min", "p90", "p99", "ci95", "n", "process_medians"}

USER_MODELS = textwrap.dedent(
    """
    import os
    import time

    import torch

    CALLS = 0


    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(16, 4)

        def forward(self, x):
            return self.fc(x)


    class CrashInForward(Tiny):
        def forward(self, x):
            os._exit(3)


    class HangInForward(Tiny):
        def forward(self, x):
            time.sleep(600)
            return x


    class CrashWhenMeasured(Tiny):
        def forward(self, x):
            global CALLS
            CALLS += 1
            if CALLS > 40:  # preparation calls forward fewer times than this; measuring, many more
                os._exit(3)
            return self.fc(x)


    def _build(cls):
        torch.manual_seed(0)
        return cls().eval(), torch.randn(1, 16)


    def tiny():
        return _build(Tiny)


    def crash():
        return _build(CrashInForward)


    def hang():
        return _build(HangInForward)


    def crash_late():
        return _build(CrashWhenMeasured)


    class Unconvertible(Tiny):
        def forward(self, x):
            return torch.linalg.eigvals(self.fc(x).reshape(2, 2)).real


    def unconvertible():
        return _build(Unconvertible)


    def dies_at_exit():
        import atexit

        atexit.register(os._exit, 3)  # the process that built it ends abnormally after its last message
        return _build(Tiny)
    """
)


@pytest.fixture()
def user_dir(tmp_path: Path) -> Path:
    """A directory outside the package holding a user's model file."""
    (tmp_path / "usermodels.py").write_text(USER_MODELS)
    return tmp_path


def _by_case(data: dict) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["variant"]): r for r in data["results"]}


def test_smoke_run_writes_the_full_contract(smoke_run: SmokeRun) -> None:
    out = smoke_run.results
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1
    assert {"os", "machine", "cpu", "cores", "python", "packages", "threads"} <= set(data["environment"])
    assert data["environment"]["packages"]["torch"].startswith("2.")
    assert data["profile"]["name"] == "smoke"
    cases = _by_case(data)
    assert set(cases) == {("digits_cnn", "torch-fp32"), ("digits_cnn", "onnx-fp32")}
    for result in cases.values():
        assert set(result) >= CONTRACT_RESULT_KEYS
        assert result["status"] == "ok" and result["device"] == "cpu" and result["reason"] is None
        latency = result["latency_ms"]
        assert set(latency) >= LATENCY_KEYS
        assert latency["ci95"][0] <= latency["median"] <= latency["ci95"][1]
        assert latency["n"] == sum(len(s) for s in result["samples_ms"]) and len(result["samples_ms"]) == 2
        assert result["load_ms"]["cold"] > 0 and result["load_ms"]["warm"] > 0
        assert result["memory"]["peak_rss_bytes"] > 0
        assert result["energy"]["source"] == "cpu-time" and result["energy"]["mj_per_inference"] is None
        assert result["energy"]["cpu_ms_per_inference"] > 0
        assert re.fullmatch(r"[0-9a-f]{64}", result["artifact"]["sha256"])
        assert result["parity"]["passed"] and result["parity"]["inputs"] == "dataset:digits_cnn"
        assert result["parity"]["metrics"]["task_accuracy"] > 0.85
    assert cases[("digits_cnn", "onnx-fp32")]["runtime"]["providers"] == ["CPUExecutionProvider"]
    assert cases[("digits_cnn", "onnx-fp32")]["artifact"]["converter_path"] == "torch.onnx dynamo"
    table = smoke_run.stdout
    assert "torch-fp32" in table and "onnx-fp32" in table and f"results: {out}" in table


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_ane_on_this_host_is_one_line_and_exit_2(tmp_path: Path) -> None:
    line = _one_line_error(bench("run", "smoke", "-d", "ane", cwd=tmp_path))
    assert line.startswith("error: nothing can run on this host")
    assert "CoreMLExecutionProvider not available" in line and "torch has no 'ane' device" in line


def test_unknown_model_and_profile_typo_are_one_line(tmp_path: Path) -> None:
    line = _one_line_error(bench("run", "-m", "no_such_model", cwd=tmp_path))
    assert "unknown model 'no_such_model'" in line
    profile = tmp_path / "typo.toml"
    profile.write_text('models = ["digits_cnn"]\n[measure]\nbudgt_s = 3\n')
    line = _one_line_error(bench("run", str(profile), cwd=tmp_path))
    assert f"{profile}: measure.budgt_s: unknown key 'budgt_s'; allowed: budget_s" in line


@pytest.mark.slow
def test_user_model_from_outside_the_package_runs_end_to_end(user_dir: Path) -> None:
    out = user_dir / "r.json"
    proc = bench(
        "run",
        "smoke",
        "-m",
        "usermodels:tiny",
        "-m",
        f"{user_dir / 'usermodels.py'}:tiny",
        "--budget",
        "0.4",
        "--json",
        str(out),
        cwd=user_dir,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())["results"]
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    assert all(r["parity"]["inputs"] == "synthetic" and r["parity"]["passed"] for r in results)


@pytest.mark.slow
def test_crashing_and_hanging_models_fail_alone(user_dir: Path) -> None:
    profile = user_dir / "faults.toml"
    profile.write_text(
        textwrap.dedent(
            """
        models = ["usermodels:tiny", "usermodels:crash", "usermodels:hang", "usermodels:crash_late"]
        variants = ["torch-fp32", "onnx-fp32"]
        [paired]
        enabled = false
        [measure]
        budget_s = 0.4
        processes = 2
        timeout_s = 10
        [parity]
        samples = 8
        """
        )
    )
    out = user_dir / "r.json"
    proc = bench("run", str(profile), "--json", str(out), cwd=user_dir)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    cases = _by_case(json.loads(out.read_text()))
    assert len(cases) == 8
    for variant in ("torch-fp32", "onnx-fp32"):
        assert cases[("usermodels:tiny", variant)]["status"] == "ok"
        crash = cases[("usermodels:crash", variant)]
        assert crash["status"] == "failed"
        assert crash["reason"] == "worker exited with code 3 while computing reference outputs"
        hang = cases[("usermodels:hang", variant)]
        assert hang["status"] == "failed"
        assert hang["reason"] == "timed out after 10 s while computing reference outputs"
    late = cases[("usermodels:crash_late", "torch-fp32")]
    assert late["status"] == "failed" and late["reason"].startswith("measurement worker exited with code 3")
    assert cases[("usermodels:crash_late", "onnx-fp32")]["status"] == "ok"
    assert "failed (torch-fp32 cpu): measurement worker exited with code 3" in proc.stdout


@pytest.mark.slow
def test_a_model_that_fails_conversion_fails_only_its_own_cases(user_dir: Path) -> None:
    out = user_dir / "r.json"
    proc = bench(
        "run",
        "smoke",
        "-m",
        "usermodels:unconvertible",
        "-m",
        "usermodels:tiny",
        "-v",
        "torch-fp32",
        "-v",
        "onnx-fp32",
        "-v",
        "coreml-fp16",
        "--budget",
        "0.4",
        "--json",
        str(out),
        cwd=user_dir,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    cases = _by_case(json.loads(out.read_text()))
    onnx = cases[("usermodels:unconvertible", "onnx-fp32")]
    assert onnx["status"] == "failed"
    assert onnx["reason"].startswith("conversion failed: torch.onnx export failed: dynamo: ")
    assert "'aten::linalg_eigvals'" in onnx["reason"]
    coreml = cases[("usermodels:unconvertible", "coreml-fp16")]
    assert coreml["status"] == "failed" and "coremltools failed on both paths" in coreml["reason"]
    assert cases[("usermodels:unconvertible", "torch-fp32")]["status"] == "ok"
    assert cases[("usermodels:tiny", "onnx-fp32")]["status"] == "ok"
    assert cases[("usermodels:tiny", "torch-fp32")]["status"] == "ok"
    tiny_coreml = cases[("usermodels:tiny", "coreml-fp16")]
    if sys.platform != "darwin":
        assert tiny_coreml["status"] == "skipped" and tiny_coreml["reason"] == "Core ML runs only on macOS"
        assert tiny_coreml["artifact"]["size_bytes"] > 0  # built and reported though not measurable here


@pytest.mark.slow
def test_convert_reports_every_variant_and_hits_the_cache(user_dir: Path) -> None:
    args = ("convert", "smoke", "-m", "usermodels:tiny", "-m", "usermodels:unconvertible", "-v", "all")
    first = bench(*args, "--out", str(user_dir / "artifacts"), cwd=user_dir)
    assert first.returncode == 1, first.stdout + first.stderr  # the unconvertible model's variants failed
    assert (user_dir / "artifacts" / "usermodels_tiny" / "onnx-int8-static" / "model.onnx").exists()
    assert (user_dir / "artifacts" / "usermodels_tiny" / "coreml-w4" / "model.mlpackage" / "Manifest.json").exists()
    second = bench(*args, cwd=user_dir)
    tiny_rows = [line for line in second.stdout.splitlines() if "│" in line][: len(VARIANTS) + 1]
    built = [row for row in tiny_rows if "│ ok " in row]
    assert built and all("│ hit " in row for row in built)
    assert "│ built " not in second.stdout
    assert "activation calibration runs Core ML predict" in second.stdout or sys.platform == "darwin"


def test_a_preparation_worker_dying_after_its_last_artifact_loses_nothing(user_dir: Path) -> None:
    args = ("convert", "smoke", "-m", "usermodels:dies_at_exit", "-v", "onnx-fp32", "-v", "onnx-fp16")
    proc = bench(*args, cwd=user_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "│ onnx-fp" in line]
    assert len(rows) == 2 and all("│ ok " in row for row in rows)


def test_nothing_outlives_a_run_in_the_temp_directory(user_dir: Path) -> None:
    temp = user_dir / "tmp"
    temp.mkdir()
    proc = bench(
        "run", "smoke", "-m", "usermodels:tiny", "-v", "onnx-fp32", "-v", "onnx-fp16", "-v", "onnx-int8-static",
        "--budget", "0.3", "--processes", "1", "--json", str(user_dir / "r.json"), cwd=user_dir,
        env={"TMPDIR": str(temp)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # `.ses`: ONNX Runtime's own telemetry session file, one fixed name written at `import onnxruntime`
    assert [p.name for p in temp.iterdir() if p.name != ".ses"] == []
