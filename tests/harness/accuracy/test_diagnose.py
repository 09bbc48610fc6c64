"""Diagnosis of a failing variant: the layer where it leaves the reference, found in a real run."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.accuracy.diagnose import summarise
from harness.results.schema import LayerComparison
from tests.conftest import bench

OVERFLOW = textwrap.dedent(
    """
    from pathlib import Path

    import torch


    class Overflow(torch.nn.Module):
        \"\"\"Fine in fp32; `blowup` leaves fp16's range (65504), so fp16 computes Inf there.\"\"\"

        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Linear(16, 32)
            self.blowup = torch.nn.Linear(32, 32)
            self.head = torch.nn.Linear(32, 4)
            with torch.no_grad():
                self.blowup.weight.mul_(300000.0)
                self.head.weight.div_(300000.0)

        def forward(self, x):
            return self.head(torch.relu(self.blowup(torch.relu(self.stem(x)))))


    def overflow():
        # other weights at every call, as a factory without a seed gives: the diagnosis must use the
        # weights the reference outputs and the artifacts came from
        calls = Path(__file__).with_suffix(".calls")
        count = len(calls.read_text()) if calls.exists() else 0
        calls.write_text("x" * (count + 1))
        torch.manual_seed(count)
        return Overflow().eval(), torch.randn(1, 16)


    class Log(torch.nn.Module):
        def forward(self, x):
            return torch.log(x)


    class MakesNaN(torch.nn.Module):
        \"\"\"`bad` takes the log of negative numbers: NaN in every runtime.\"\"\"

        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Linear(16, 8)
            self.bad = Log()
            self.head = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.head(self.bad(self.stem(x)))


    def makes_nan():
        torch.manual_seed(0)
        return MakesNaN().eval(), torch.randn(1, 16)
    """
)


def test_failing_variants_are_diagnosed_to_the_layer(tmp_path: Path) -> None:
    (tmp_path / "overflowmodels.py").write_text(OVERFLOW)
    out = tmp_path / "r.json"
    proc = bench(
        "run", "smoke", "-m", "overflowmodels:overflow", "-m", "overflowmodels:makes_nan",
        "-v", "onnx-fp32", "-v", "onnx-fp16", "--budget", "0.3", "--processes", "1", "--pair-budget", "1",
        "--json", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = {(r["model"], r["variant"]): r for r in json.loads(out.read_text())["results"]}

    # fp16: `blowup` leaves fp16's range. ONNX Runtime's CPU provider computes fp16 nodes in fp32 and the
    # output stays finite but off (the gate fails); the tensor the graph declares as fp16 there is Inf.
    assert results[("overflowmodels:overflow", "onnx-fp32")]["parity"]["passed"]
    parity = results[("overflowmodels:overflow", "onnx-fp16")]["parity"]
    assert not parity["passed"] and any(f.startswith(("cosine", "snr_db")) for f in parity["failures"])
    diagnosis = parity["diagnosis"]
    assert diagnosis["first_divergent_layer"] == "blowup", diagnosis
    assert [row["layer"] for row in diagnosis["layers"]] == ["stem", "blowup", "head"]
    assert diagnosis["layers"][0]["nonfinite"] == 0 and diagnosis["layers"][1]["nonfinite"] > 0
    assert "diagnosis (onnx-fp16 cpu): first NaN/Inf at layer 'blowup'" in proc.stdout

    # NaN in the outputs fails the gate whatever the family, and is located.
    nan = results[("overflowmodels:makes_nan", "onnx-fp32")]["parity"]
    assert not nan["passed"] and nan["failures"][0].endswith("NaN/Inf values in the outputs")
    assert nan["diagnosis"]["first_divergent_layer"] == "bad"
    assert "FAIL: " in proc.stdout and "NaN/Inf values in the outputs" in proc.stdout


def test_summary_ranks_snr_drops_and_names_the_first_layer_below_tolerance() -> None:
    layers = [
        LayerComparison("a", "t0", 60.0, 0.0, 0),
        LayerComparison("b", "t1", 45.0, 0.1, 0),
        LayerComparison("c", "t2", 22.0, 0.5, 0),
        LayerComparison("d", "t3", 21.0, 0.6, 0),
    ]
    result = summarise(layers, [3, 1], np.array([0.99, 0.95, 0.99, 0.9]), tolerance_db=30.0)
    assert result.first_divergent_layer == "c"
    assert result.largest_drops is not None and [d.layer for d in result.largest_drops] == ["c", "b", "d"]
    assert result.largest_drops[0].drop_db == 23.0
    assert result.summary.startswith("first layer below 30 dB: 'c' at 22.0 dB; largest SNR drops: c -23.0 dB")
    assert "worst samples: #3 (cosine 0.9000), #1 (cosine 0.9500)" in result.summary


BRANCHY = textwrap.dedent(
    """
    import torch


    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(16, 16)

        def forward(self, x):
            y = self.linear(x)
            if x.sum() > 0:
                return y * 2
            return -y


    def build():
        torch.manual_seed(0)
        return Branchy().eval(), torch.ones(1, 16)
    """
)
FROZEN = "the exported graph froze a data-dependent branch at branchy.py:12: it computes one branch for every input"


@pytest.mark.slow
def test_a_branch_frozen_by_the_trace_is_named_on_the_artifact_result_and_diagnosis(tmp_path: Path) -> None:
    """Issue 25 item 13: a user model with `if x.sum() > 0` exports through the TorchScript trace (ONNX)
    and `torch.jit.trace` (Core ML), which keep the example's branch for every input, silently; ONNX
    parity then failed with a diagnosis that no compared layer left the tolerance. The tracer's warning
    is caught at conversion and named on the artifact and in the result, the diagnosis says the graph's
    structure differs, and the Core ML artifact (converted, not measurable on Linux) carries it too."""
    (tmp_path / "branchy.py").write_text(BRANCHY)
    out = tmp_path / "r.json"
    proc = bench(
        "run", "smoke", "-m", "branchy.py:build", "-v", "onnx-fp32", "-v", "coreml-fp32", "--budget", "0.2",
        "--processes", "1", "--pair-budget", "1", "--json", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    onnx = results["onnx-fp32"]
    assert onnx["artifact"]["notes"]["trace_warnings"] == [FROZEN]
    assert FROZEN in onnx["warnings"]
    assert not onnx["parity"]["passed"]
    diagnosis = onnx["parity"]["diagnosis"]
    assert diagnosis["first_divergent_layer"] is None
    assert diagnosis["summary"].startswith(f"the graph's structure differs from the model's: {FROZEN}")
    assert FROZEN in proc.stdout
    coreml = results["coreml-fp32"]
    assert coreml["artifact"]["notes"]["trace_warnings"] == [FROZEN], coreml
    assert FROZEN in coreml["warnings"]


def test_matching_layers_with_diverging_outputs_say_the_structure_differs() -> None:
    """Issue 25 item 13: when every compared layer is within the tolerance yet parity failed, the summary
    said only that no layer left the tolerance; it says the graph's structure differs (or the difference
    lies between the compared layers)."""
    layers = [LayerComparison("a", "t0", 60.0, 0.0, 0)]
    result = summarise(layers, [0], np.array([-0.47]), tolerance_db=30.0)
    assert result.first_divergent_layer is None
    assert result.summary.startswith(
        "every compared layer is within the 30 dB tolerance on the 1 worst samples, yet the outputs diverge: "
        "the graph's structure differs from the model's"
    )
