"""Process and system readings for the job, read at scrape time with psutil.

The process series cover the training process tree (the entrypoint and every rank it launched), so
they describe the job rather than the exporter serving them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class JobProcessCollector(Collector):
    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        psutil.cpu_percent(interval=None)  # primes the system-wide CPU reading

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root_pid)
            tree = [root, *root.children(recursive=True)]
            return [p for p in tree if p.pid != os.getpid()]  # not the exporter itself
        except psutil.Error:
            return []

    def collect(self) -> Iterator[Any]:
        cpu, rss, count = 0.0, 0, 0
        for process in self._tree():
            try:
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
                count += 1
            except psutil.Error:
                continue
        yield CounterMetricFamily("trainjob_process_cpu_seconds", "CPU seconds used by the job's processes.", value=cpu)
        yield GaugeMetricFamily("trainjob_process_resident_memory_bytes", "Resident memory of the job's processes.",
                                value=float(rss))  # fmt: skip
        yield GaugeMetricFamily("trainjob_processes", "Processes in the job's process tree.", value=float(count))
        memory = psutil.virtual_memory()
        yield GaugeMetricFamily("trainjob_system_memory_used_bytes", "Memory in use on the node.",
                                value=float(memory.total - memory.available))  # fmt: skip
        yield GaugeMetricFamily("trainjob_system_memory_total_bytes", "Memory of the node.", value=float(memory.total))
        yield GaugeMetricFamily("trainjob_system_cpu_utilization_ratio", "Node CPU busy fraction since last scrape.",
                                value=psutil.cpu_percent(interval=None) / 100)  # fmt: skip
