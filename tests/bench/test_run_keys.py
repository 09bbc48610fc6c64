"""`bench run smoke` writes the same results keys as before the redesign: the contract dashboards read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import bench

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


def smoke_keys(out: Path) -> set[str]:
    proc = bench("run", "smoke", "--json", str(out / "smoke.json"), "--db", f"sqlite:///{out / 'store.sqlite'}")
    assert proc.returncode == 0, proc.stderr
    return key_paths(json.loads((out / "smoke.json").read_text()))


def test_bench_run_smoke_writes_the_keys_it_wrote_before_the_redesign(tmp_path: Path) -> None:
    expected = set(GOLDEN.read_text().split())
    assert smoke_keys(tmp_path) == expected
