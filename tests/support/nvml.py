"""A stand-in for NVML, for tests on machines without a GPU (where NVML cannot exist)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class FakeNvml:
    """A stand-in for NVML (a mock, named as such) on a GPU-less machine, where NVML cannot exist: the
    pynvml calls the GPU collector makes, for two GPUs, the second without energy readings."""

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
