"""GPU readings from NVML (nvidia-ml-py), per `gpu` label, read at scrape time.

Without NVML (no driver, no GPU) the collector is not registered and no GPU series exist: never a
fake zero. XID errors are counted from NVML's event API where the driver supports it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


_FAMILIES = {
    "utilization": (GaugeMetricFamily, "trainjob_gpu_utilization_ratio", "GPU busy fraction (0..1)."),
    "used": (GaugeMetricFamily, "trainjob_gpu_memory_used_bytes", "GPU memory in use."),
    "total": (GaugeMetricFamily, "trainjob_gpu_memory_total_bytes", "GPU memory in all."),
    "temperature": (GaugeMetricFamily, "trainjob_gpu_temperature_celsius", "GPU core temperature."),
    "power": (GaugeMetricFamily, "trainjob_gpu_power_watts", "GPU power draw."),
    "energy": (CounterMetricFamily, "trainjob_gpu_energy_joules", "GPU energy used since the driver loaded."),
}


class GpuCollector(Collector):
    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        self.xids = [0 for _ in self.handles]
        self.events = self._register_xid_events()

    def _register_xid_events(self) -> Any:
        nvml = self.nvml
        try:
            events = nvml.nvmlEventSetCreate()
            for handle in self.handles:
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, events)
        except nvml.NVMLError as error:
            logger.info(
                "GPU XID events are not available here (%s); trainjob_gpu_xid_errors_total is not exported", error
            )
            return None
        return events

    def _drain_xid_events(self) -> None:
        nvml = self.nvml
        while self.events is not None:
            try:
                event = nvml.nvmlEventSetWait_v2(self.events, 0)
            except nvml.NVMLError:  # timeout: no event waiting
                return
            for index, handle in enumerate(self.handles):
                if nvml.nvmlDeviceGetIndex(event.device) == nvml.nvmlDeviceGetIndex(handle):
                    self.xids[index] += 1

    def _temperature(self, handle: Any) -> float:
        return float(self.nvml.nvmlDeviceGetTemperature(handle, self.nvml.NVML_TEMPERATURE_GPU))

    def _optional(self, read: Any, handle: Any) -> float | None:
        try:
            return float(read(handle))
        except self.nvml.NVMLError:  # not supported on this GPU (e.g. energy on older boards)
            return None

    def collect(self) -> Iterator[Any]:
        nvml = self.nvml
        families = {key: kind(name, text, labels=["gpu"]) for key, (kind, name, text) in _FAMILIES.items()}
        self._drain_xid_events()
        for index, handle in enumerate(self.handles):
            gpu = [str(index)]
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            families["utilization"].add_metric(gpu, nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100)
            families["used"].add_metric(gpu, float(memory.used))
            families["total"].add_metric(gpu, float(memory.total))
            families["temperature"].add_metric(gpu, self._temperature(handle))
            power = self._optional(nvml.nvmlDeviceGetPowerUsage, handle)
            if power is not None:
                families["power"].add_metric(gpu, power / 1000)
            energy = self._optional(nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
            if energy is not None:
                families["energy"].add_metric(gpu, energy / 1000)
        yield from families.values()
        if self.events is not None:
            xid = CounterMetricFamily("trainjob_gpu_xid_errors", "Critical XID errors seen by NVML.", labels=["gpu"])
            for index, count in enumerate(self.xids):
                xid.add_metric([str(index)], count)
            yield xid


def gpu_collector() -> GpuCollector | None:
    """The NVML collector, or None (one log line says why) where there is no usable GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() == 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return GpuCollector(pynvml)
    except Exception as error:  # NVMLError_LibraryNotFound and friends: no GPU here
        logger.info("no NVML GPU found (%s): GPU metrics are not exported", error)
        return None
