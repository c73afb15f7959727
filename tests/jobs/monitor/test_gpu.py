"""GPU collector: the NVML -> metric mapping, and no GPU series at all where there is no NVML.

NVML cannot exist on this GPU-less machine, so the mapping test uses a stand-in NVML module (a mock,
named as such: `tests/support/nvml.py`). The real collector is run on a GPU machine when one is lent
(see the issue's note).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from jobs.monitor.gpu import GpuCollector, gpu_collector
from tests.support.nvml import FakeNvml


def _scrape_text(collector: GpuCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def _scrape(collector: GpuCollector) -> dict[str, float]:
    samples = {}
    for line in _scrape_text(collector).splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_nvml_readings_map_to_base_units_per_gpu() -> None:
    samples = _scrape(GpuCollector(FakeNvml()))
    assert samples['trainjob_gpu_utilization_ratio{gpu="0"}'] == 0.97
    assert samples['trainjob_gpu_memory_used_bytes{gpu="1"}'] == 2 * 2**30
    assert samples['trainjob_gpu_memory_total_bytes{gpu="0"}'] == 80 * 2**30
    assert samples['trainjob_gpu_temperature_celsius{gpu="1"}'] == 44
    assert samples['trainjob_gpu_power_watts{gpu="0"}'] == 612.5
    assert samples['trainjob_gpu_energy_joules_total{gpu="0"}'] == 5000
    assert 'trainjob_gpu_energy_joules_total{gpu="1"}' not in samples  # unsupported: absent, not zero
    assert samples['trainjob_gpu_xid_errors_total{gpu="1"}'] == 1
    assert samples['trainjob_gpu_xid_errors_total{gpu="0"}'] == 0


def test_gpu_series_exist_exactly_when_a_gpu_does(caplog) -> None:
    caplog.set_level("INFO")
    collector = gpu_collector()
    if not Path("/dev/nvidiactl").exists():  # CPU machines (CI): no collector, one log line, no fake zeros
        assert collector is None
        assert "GPU metrics are not exported" in caplog.text
    else:  # a GPU machine: the real NVML path
        assert collector is not None and "trainjob_gpu_memory_total_bytes" in _scrape_text(collector)
