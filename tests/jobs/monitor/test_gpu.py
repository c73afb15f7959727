"""GPU collector: the NVML -> metric mapping, and no GPU series at all where there is no NVML.

NVML cannot exist on this GPU-less machine, so the mapping test uses a stand-in NVML module (a mock,
named as such). The real collector is run on a GPU machine when one is lent (see the issue's note).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from jobs.monitor.gpu import GpuCollector, gpu_collector


class FakeNvml:
    """Mock of the pynvml calls the collector makes: two GPUs, the second without energy readings."""

    NVML_TEMPERATURE_GPU = 0
    nvmlEventTypeXidCriticalError = 8

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        self.pending_xids = [1]  # one XID on GPU 1, then none

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetIndex(self, handle: int) -> int:
        return handle

    def nvmlEventSetCreate(self) -> str:
        return "events"

    def nvmlDeviceRegisterEvents(self, handle: int, kinds: int, events: str) -> None:
        pass

    def nvmlEventSetWait_v2(self, events: str, timeout: int) -> Any:
        if not self.pending_xids:
            raise self.NVMLError("timeout")
        return SimpleNamespace(device=self.pending_xids.pop())

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=(handle + 1) * 2**30, total=80 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=[97, 3][handle])

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return [71, 44][handle]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return [612_500, 88_000][handle]  # milliwatts

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if handle == 1:
            raise self.NVMLError("not supported")
        return 5_000_000  # millijoules


def _scrape(collector: GpuCollector) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(collector)
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
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


def test_without_nvml_there_is_no_gpu_collector(caplog) -> None:
    caplog.set_level("INFO")
    assert gpu_collector() is None  # this machine has no GPU driver
    assert "GPU metrics are not exported" in caplog.text
