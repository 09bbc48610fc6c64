"""`bench run smoke` writes the keys it wrote before the redesign (the contract dashboards read), plus
the keys added since, and says where its time went."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.results.readings.timing import breakdown_line
from harness.results.schema import load_results
from tests.conftest import SmokeRun

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "results" / "smoke-keys.txt"


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (`results[].memory.peak_rss_bytes`); lists are one `[]` level, and
    the keys of maps keyed by data (models, variants, statistics) are kept, since they are the contract too."""
    if isinstance(value, dict):
        paths = set()
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths |= {path} | key_paths(inner, path)
        return paths
    if isinstance(value, list):
        return set().union(*(key_paths(item, f"{prefix}[]") for item in value)) if value else set()
    return set()


def test_bench_run_smoke_writes_the_keys_it_wrote_before_the_redesign(smoke_run: SmokeRun) -> None:
    path = smoke_run.results
    expected = set(GOLDEN.read_text().split())
    # `decisions[].excluded` maps variants to reasons, and which variants it names is the measurement's
    # outcome (smoke's one short paired process may be too wide to rank on a noisy machine), not the contract.
    written = {p for p in key_paths(json.loads(path.read_text())) if not p.startswith("decisions[].excluded.")}
    assert written == expected


def test_a_run_records_its_phases_and_every_worker_process_and_prints_the_breakdown(smoke_run: SmokeRun) -> None:
    timing = load_results(smoke_run.results).timing
    assert timing is not None
    kinds = [p.kind for p in timing.processes]
    assert kinds.count("prepare") == 1 and kinds.count("unpaired") == 4 and kinds.count("paired") >= 1
    phases = timing.prepare_s + timing.unpaired_s + timing.paired_s
    assert 0 < phases <= timing.wall_s + 1e-6 and timing.reporting_s > 0
    for process in timing.processes:
        assert process.startup_s is not None and 0 < process.startup_s < process.wall_s
        assert process.sampling_s < process.wall_s
    assert sum(p.sampling_s for p in timing.processes if p.kind == "unpaired") > 0
    assert breakdown_line(timing) in smoke_run.stdout
