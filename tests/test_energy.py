"""Energy sources: RAPL against a powercap tree built here (this machine has none), and the proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.energy import CpuTimeWindow, EnergyMeter, RaplSource, counter_source


def powercap(root: Path, zones: dict[str, tuple[int, int]]) -> Path:
    """zones: name -> (energy_uj, max_energy_range_uj), laid out like /sys/class/powercap."""
    for name, (energy, max_range) in zones.items():
        zone = root / name
        zone.mkdir(parents=True)
        (zone / "energy_uj").write_text(f"{energy}\n")
        (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
        (zone / "name").write_text("package-0\n")
    return root


def set_energy(root: Path, zone: str, value: int) -> None:
    (root / zone / "energy_uj").write_text(f"{value}\n")


def test_rapl_sums_packages_and_handles_wraparound(tmp_path: Path) -> None:
    root = powercap(
        tmp_path,
        {
            "intel-rapl:0": (1_000_000, 262_143_328_850),
            "intel-rapl:0:0": (5, 262_143_328_850),  # a sub-zone (core): inside package 0, not added again
            "intel-rapl:1": (262_143_000_000, 262_143_328_850),  # near its wrap point
        },
    )
    source = RaplSource.find(root)
    assert source is not None and [d.energy.parent.name for d in source.domains] == ["intel-rapl:0", "intel-rapl:1"]
    assert source.read_mj() == 0.0
    set_energy(root, "intel-rapl:0", 3_000_000)  # +2 J
    set_energy(root, "intel-rapl:1", 671_150)  # wrapped: +328_850 to the top, then +671_150 = +1 J
    assert source.read_mj() == pytest.approx(3000.0)
    set_energy(root, "intel-rapl:0", 3_500_000)
    assert source.read_mj() == pytest.approx(3500.0)


def test_unreadable_or_absent_rapl_falls_back_to_the_proxy(tmp_path: Path) -> None:
    assert RaplSource.find(tmp_path) is None
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "max_energy_range_uj").write_text("100\n")  # energy_uj missing, as when it is root-only
    assert RaplSource.find(tmp_path) is None
    assert counter_source("cpu", tmp_path) is None


def test_meter_subtracts_the_idle_baseline(tmp_path: Path) -> None:
    root = powercap(tmp_path, {"intel-rapl:0": (0, 10**12)})
    source = RaplSource.find(root)
    assert source is not None
    meter = EnergyMeter(source)
    meter.idle_mw = 0.0  # idle measured as nothing: all window energy is the inference's
    meter.begin()
    set_energy(root, "intel-rapl:0", 50_000_000)  # 50 J over the window
    stats = meter.end(inferences=1000)
    assert stats.source == "rapl" and stats.idle_subtracted
    assert stats.mj_per_inference == pytest.approx(50.0)
    assert stats.cpu_ms_per_inference is not None


def test_cpu_time_proxy_is_named_and_never_millijoules() -> None:
    window = CpuTimeWindow()
    window.begin()
    sum(i * i for i in range(200_000))
    stats = window.end(inferences=10)
    assert stats.source == "cpu-time" and stats.mj_per_inference is None and stats.cpu_ms_per_inference > 0
    assert EnergyMeter(None).end(10).source == "cpu-time"
