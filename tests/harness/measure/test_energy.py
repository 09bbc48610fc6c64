"""Energy sources: RAPL against a powercap tree built here (this machine has none), and the proxy."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.measure.energy import (
    AppleEnergySource,
    CounterUnreadable,
    CpuTimeWindow,
    EnergyMeter,
    RaplSource,
    counter_source,
)


@dataclass
class ZeusReading:
    """The fields of zeus-apple-silicon's `AppleEnergyMetrics` (bindings/energy_bindings.hpp), each an
    optional mJ count: a default-constructed one, as zeus returns where IOReport exposes no channel, is all
    None."""

    cpu_total_mj: int | None = None
    efficiency_cores_mj: list[int] | None = None
    performance_cores_mj: list[int] | None = None
    efficiency_cluster_mj: list[int] | None = None
    performance_cluster_mj: list[int] | None = None
    efficiency_core_manager_mj: int | None = None
    performance_core_manager_mj: int | None = None
    dram_mj: int | None = None
    gpu_mj: int | None = None
    gpu_sram_mj: int | None = None
    ane_mj: int | None = None


class ZeusReadings:
    """`AppleEnergyMonitor.get_cumulative_energy` of a Mac whose IOReport gives these readings in turn."""

    def __init__(self, *readings: ZeusReading) -> None:
        self.readings = list(readings)

    def get_cumulative_energy(self) -> ZeusReading:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


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
    assert counter_source("cpu", tmp_path) == (None, None)


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


def test_an_apple_source_with_no_readable_channel_falls_back_to_the_proxy_and_says_why(tmp_path: Path) -> None:
    """A virtualised Mac: zeus reads every channel as None. That is no counter, not 0 mJ."""
    with pytest.raises(CounterUnreadable, match="no IOReport energy channel"):
        AppleEnergySource(ZeusReadings(ZeusReading()))
    meter = EnergyMeter(*counter_source("cpu", tmp_path, apple=lambda: AppleEnergySource(ZeusReadings(ZeusReading()))))
    assert meter.source is None and meter.note is not None
    meter.measure_idle(0.0)
    meter.begin()
    stats = meter.end(10)
    assert stats.source == "cpu-time" and stats.mj_per_inference is None
    assert stats.note is not None and "every one None" in stats.note


def test_a_channel_that_reads_none_is_missing_not_zero() -> None:
    readings = [ZeusReading(cpu_total_mj=1000, gpu_mj=200), ZeusReading(cpu_total_mj=1000, gpu_mj=200)]
    readings.append(ZeusReading(cpu_total_mj=3000, gpu_mj=700))
    source = AppleEnergySource(ZeusReadings(*readings))
    assert source.channels == ("cpu_total_mj", "gpu_mj") and "ane_mj" in source.missing
    meter = EnergyMeter(source)
    meter.idle_mw = 0.0
    meter.begin()
    stats = meter.end(inferences=10)
    assert stats.source == "ioreport (zeus-apple-silicon)" and stats.mj_per_inference == pytest.approx(250.0)
    assert set(stats.missing_channels) == {"gpu_sram_mj", "ane_mj", "dram_mj"}
    stopped = AppleEnergySource(ZeusReadings(ZeusReading(cpu_total_mj=5), ZeusReading(cpu_total_mj=5), ZeusReading()))
    meter = EnergyMeter(stopped)
    meter.begin()
    stats = meter.end(10)  # the channel stopped reading: the proxy, with the reason, never a guess
    assert stats.source == "cpu-time" and stats.mj_per_inference is None and "stopped reading" in (stats.note or "")


@pytest.mark.skipif(sys.platform != "darwin", reason="requires macOS (IOReport through zeus-apple-silicon)")
def test_this_mac_either_reads_a_channel_or_says_it_reads_none() -> None:
    pytest.importorskip("zeus_apple_silicon", reason="requires macOS with zeus-apple-silicon installed")
    source, note = counter_source("cpu")
    if isinstance(source, AppleEnergySource):
        assert source.channels and note is None
    else:
        assert note is not None
