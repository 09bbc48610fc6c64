"""`bench compare` and sharding, end to end on real runs."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from bench.cli import NO_MATCH
from harness.orchestrate.plan import parse_shard, plan
from profiles.errors import ConfigError
from profiles.schema import load_profile
from tests.conftest import bench, one_error_line
from tools.slowed_backend import environment

MODELS = textwrap.dedent(
    """
    import os

    import torch

    def mlp():
        # BENCH_TEST_DEPTH makes a deliberately slower build of the same model name
        depth = int(os.environ.get("BENCH_TEST_DEPTH", "4"))
        torch.manual_seed(0)
        layers = []
        for _ in range(depth):
            layers += [torch.nn.Linear(512, 512), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers).eval(), torch.randn(1, 512)
    """
)
PROFILE = textwrap.dedent(
    """
    models = ["gatemodels:mlp"]
    variants = ["onnx-fp32"]
    [measure]
    budget_s = 0.8
    processes = 4
    threads = 1
    [parity]
    samples = 8
    """
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    (root / "gatemodels.py").write_text(MODELS)
    (root / "gate.toml").write_text(PROFILE)
    paths = {}
    for name, depth in (("base", "4"), ("again", "4"), ("slow", "8")):
        paths[name] = root / f"{name}.json"
        proc = bench("run", "gate.toml", "--json", str(paths[name]), cwd=root, env={"BENCH_TEST_DEPTH": depth})
        assert proc.returncode == 0, proc.stdout + proc.stderr
    paths["root"] = root
    return paths


def test_a_run_against_itself_is_no_change(runs: dict[str, Path]) -> None:
    proc = bench("compare", str(runs["base"]), str(runs["base"]), "--markdown", str(runs["root"] / "self.md"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gatemodels:mlp onnx-fp32 cpu (onnxruntime)" in proc.stdout and "no change" in proc.stdout
    assert "REGRESSION" not in proc.stdout
    assert "No regression." in (runs["root"] / "self.md").read_text()


def test_a_repeat_run_is_not_a_regression(runs: dict[str, Path]) -> None:
    # Unpaired, two runs apart: a CI runner once read this repeat 1.084x [1.056, 1.140], every process of the
    # second run slower than every one of the first (p = 2/70, the least four a side allow), a false
    # regression at the default 5%. That is the weaker test's known limit (docs/ci-gating.md says so and
    # `--baseline` is the gate); this asserts an unchanged build is not flagged beyond the 3-25 % a
    # process wanders here, which a mis-matched case (the 2x build below) would be.
    proc = bench("compare", str(runs["base"]), str(runs["again"]), "--threshold", "20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "REGRESSION" not in proc.stdout


def test_a_slower_build_is_a_regression_named_with_its_ratio(runs: dict[str, Path]) -> None:
    """A build with twice the layers, compared unpaired with the base run: exit 1, one regression line
    with the ratio and an interval clearly above 1 (on a slower VM the ratio read 3.14x, past an upper
    bound that asserted the machine's speed, not the tool's verdict)."""
    proc = bench("compare", str(runs["base"]), str(runs["slow"]), "--markdown", str(runs["root"] / "slow.md"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("regression: gatemodels:mlp onnx-fp32 cpu"))
    found = re.search(r"latency ([\d.]+)x \[95% CI ([\d.]+), ([\d.]+)\]", line)
    assert found is not None, line
    ratio, lo, hi = (float(v) for v in found.groups())
    # twice the layers: clearly slower. How much slower is the machine's (unpaired processes on a shared
    # VM read anywhere from 1.4x to past 3x), so only what the design guarantees is asserted: a
    # significant regression, its whole interval clearly above the 5 % threshold.
    assert 1.15 < lo <= ratio <= hi
    assert "artifact grew" in line
    assert "**1 regression(s)**" in (runs["root"] / "slow.md").read_text()


def test_compare_refuses_other_hosts_and_unknown_schema(runs: dict[str, Path]) -> None:
    data = json.loads(runs["base"].read_text())
    data["environment"]["hostname"] = "elsewhere"
    data["environment"]["packages"]["onnxruntime"] = "0.0.1"
    other = runs["root"] / "other.json"
    other.write_text(json.dumps(data))
    proc = bench("compare", str(runs["base"]), str(other))
    assert proc.returncode == 2
    assert "hostname:" in proc.stderr and "packages.onnxruntime:" in proc.stderr
    assert "--allow-env-mismatch" in proc.stderr
    assert bench("compare", str(runs["base"]), str(other), "--allow-env-mismatch").returncode == 0

    data["schema_version"] = 99
    future = runs["root"] / "future.json"
    future.write_text(json.dumps(data))
    proc = bench("compare", str(runs["base"]), str(future))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    expected = f"error: {future}: schema_version 99 is not supported by this bench (reads 1); upgrade ondevice-bench"
    assert lines == [expected]


def test_compare_reads_run_ids_from_the_store(runs: dict[str, Path]) -> None:
    run_id = json.loads(runs["base"].read_text())["run_id"]
    proc = bench("compare", run_id, str(runs["base"]), cwd=runs["root"])  # the default store of those runs
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no change" in proc.stdout


def test_shards_cover_every_case_exactly_once() -> None:
    profile = load_profile("default").profile
    everything = Counter((c.model.name, c.variant.name, c.device) for c in plan(profile))
    shards = [plan(profile, (i, 3)) for i in (1, 2, 3)]
    together = Counter((c.model.name, c.variant.name, c.device) for shard in shards for c in shard)
    assert together == everything and max(together.values()) == 1
    assert all(abs(len(s) - len(everything) / 3) <= 1 for s in shards)


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3"])
def test_bad_shards_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--shard .*expected I/N"):
        parse_shard(text)


def test_the_paired_ci_gate_fails_a_5_percent_slower_build_and_passes_the_same_build(tmp_path: Path) -> None:
    """`bench run ci --baseline`: each case paired with the baseline's artifact in one process. A build made
    5 % slower (`tools/slowed_backend.py`: this run's artifacts staged as copies whose every call busy-waits
    5 % more) exits 1 naming the paired ratio; the unchanged build exits 0."""
    flags = ("-m", "digits_cnn", "-v", "onnx-fp32", "--processes", "2", "--budget", "0.4")
    base = tmp_path / "base.json"
    proc = bench("run", "ci", *flags, "--pair-budget", "5", "--json", str(base), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a series ends at its first decided look (six processes); the budget only has to let a slow VM reach it
    slower = bench(
        "run", "ci", *flags, "--pair-budget", "90", "--baseline", str(base), "--json", str(tmp_path / "slower.json"),
        cwd=tmp_path, env=environment(0.05),
    )  # fmt: skip
    assert slower.returncode == 1, slower.stdout + slower.stderr
    line = next(x for x in slower.stdout.splitlines() if x.startswith("regression: digits_cnn onnx-fp32 cpu"))
    found = re.search(r"latency ([\d.]+)x \[95% CI ([\d.]+), ([\d.]+)\] \(paired: ", line)
    assert found is not None, line
    ratio, lo, hi = (float(v) for v in found.groups())
    assert 1.01 < lo <= ratio <= hi and 1.02 < ratio < 1.15  # 5 %, plus the wrapper's own call on a 40 us model
    same = bench(
        "run", "ci", *flags, "--pair-budget", "15", "--baseline", str(base), "--json", str(tmp_path / "same.json"),
        cwd=tmp_path,
    )  # fmt: skip
    assert same.returncode == 0, same.stdout + same.stderr
    assert "REGRESSION" not in same.stdout and "paired in one process" in same.stdout
    comparison = json.loads((tmp_path / "same.json").read_text())["results"][0]["against_baseline"]
    assert comparison["against"] == "baseline" and comparison["verdict"] in ("no change", "inconclusive")
    assert all(len(p["a_ms"]) == len(p["b_ms"]) > 0 for p in comparison["processes"])


@pytest.mark.parametrize("value", ["nan", "-50", "inf"])
def test_a_memory_tolerance_that_is_not_a_percentage_is_one_line(runs: dict[str, Path], value: str) -> None:
    """`bench compare --memory-tolerance nan` used to switch the memory gate off without a word (NaN
    compares false) and `-50` flagged an unchanged run's memory as a regression: both are refused before
    anything is read, like `--threshold`."""
    proc = bench("compare", str(runs["base"]), str(runs["base"]), "--memory-tolerance", value)
    expected = f"error: --memory-tolerance {float(value)}: expected a percentage of 0 or more, e.g. 10"
    assert one_error_line(proc) == expected


@pytest.mark.parametrize("value", [0.0, -1.5])
def test_compare_refuses_a_latency_that_is_not_positive(runs: dict[str, Path], value: float) -> None:
    """A results file with a zero or negative latency sample (an edited or broken file) used to be compared
    as if it were a time: `bench compare` names the file and the case, exit 2."""
    data = json.loads(runs["base"].read_text())
    data["results"][0]["samples_ms"][1][2] = value
    edited = runs["root"] / f"edited-{value}.json"
    edited.write_text(json.dumps(data))
    line = one_error_line(bench("compare", str(runs["base"]), str(edited)))
    expected = (
        f"error: {edited}: gatemodels:mlp onnx-fp32 cpu (onnxruntime): latency {value:g} ms; "
        "every latency must be a positive number of milliseconds"
    )
    assert line == expected


def test_a_baseline_without_a_matching_case_fails_the_run(runs: dict[str, Path]) -> None:
    """`bench run --baseline` whose baseline holds none of the run's cases used to exit 0 with an empty
    table: a gate that compared nothing passed. As `bench compare` does, it says so and exits 1."""
    proc = bench(
        "run", "gate.toml", "-v", "torch-fp32", "--processes", "1", "--budget", "0.2",
        "--baseline", str(runs["base"]), "--json", str(runs["root"] / "unmatched.json"), cwd=runs["root"],
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert NO_MATCH in proc.stderr and "Traceback" not in proc.stderr


def test_a_baseline_comparison_without_a_paired_process_is_shown_without_a_ratio(runs: dict[str, Path]) -> None:
    """`--pair-budget 0.1` with two variants: the variants' series spends the whole budget, so the gate's
    series gets no paired process. Its comparison has no ratio and used to crash the table
    (`ValueError: not enough values to unpack` in `_latency_text`); it reads "no ratio"."""
    out = runs["root"] / "starved.json"
    proc = bench(
        "run", "gate.toml", "-v", "torch-fp32", "-v", "onnx-fp32", "--processes", "1", "--budget", "0.2",
        "--pair-budget", "0.1", "--baseline", str(runs["base"]), "--json", str(out), cwd=runs["root"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    [onnx] = [r for r in json.loads(out.read_text())["results"] if r["variant"] == "onnx-fp32"]
    assert onnx["against_baseline"]["processes"] == []
    row = next(line for line in proc.stdout.splitlines() if "gatemodels:mlp onnx-fp32 cpu" in line and "│" in line)
    assert "no ratio" in row


def test_a_baseline_artifact_that_changed_since_the_baseline_is_not_paired(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """The baseline's artifact replaced by garbage after the baseline run: it used to be paired anyway (its
    existence was all that was checked), the paired process failed and the table crashed. Its sha256 is
    checked: a note says it changed, and the case is not paired with it."""
    data = json.loads(runs["base"].read_text())
    artifact = data["results"][0]["artifact"]
    copy = tmp_path / "entry"
    shutil.copytree(Path(artifact["path"]).parent, copy)
    moved = copy / Path(artifact["path"]).name
    moved.write_bytes(b"not a model")
    artifact["path"] = str(moved)
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(data))
    proc = bench(
        "run", "gate.toml", "--processes", "1", "--budget", "0.2", "--baseline", str(baseline),
        "--json", str(tmp_path / "current.json"), cwd=runs["root"],
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    note = (
        f"note: gatemodels:mlp onnx-fp32 cpu: not paired with the baseline: the baseline artifact {moved} "
        "no longer matches its sha256 (it changed after the baseline run)"
    )
    assert note in proc.stdout, proc.stdout
    current = json.loads((tmp_path / "current.json").read_text())["results"][0]
    assert current["against_baseline"] is None
