"""One host sample read with psutil into a HostMetrics message (blocking: run it in a worker thread).

A part that fails (a mount that cannot be stat'ed, sensors that cannot be read) is left out of the
sample and named in ``Sample.failures``; it never costs the rest of the sample.
"""

from __future__ import annotations

import fnmatch
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psutil

from amoskys.collectors.host.config import HostConfig
from amoskys.proto import events_pb2

T = TypeVar("T")


@dataclass
class Sample:
    """A HostMetrics message, what could not be read for it, and what was cut to bound labels."""

    metrics: events_pb2.HostMetrics
    failures: dict[str, str] = field(default_factory=dict)  # "disk_usage /mnt/x" → error
    truncated: dict[str, int] = field(default_factory=dict)  # kind → values left out


def cpu_busy_percent(before: Any, after: Any) -> float:
    """Percent of time not idle between two psutil cpu_times samples (iowait counts as idle, guest
    time is already inside user time: psutil's own formula)."""

    def split(t: Any) -> tuple[float, float]:
        total = sum(t)
        total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
        idle = t.idle + getattr(t, "iowait", 0.0)
        return total, idle

    total_before, idle_before = split(before)
    total_after, idle_after = split(after)
    total = total_after - total_before
    if total <= 0:
        return 0.0
    busy = total - (idle_after - idle_before)
    return round(min(100.0, max(0.0, busy / total * 100)), 2)


def _excluded(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class HostSampler:
    """Reads samples; keeps the previous CPU times so utilisation covers the interval between two."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self._cpu_before: tuple[Any, list[Any]] | None = None

    def take(self) -> Sample:
        """Read everything now. Blocking."""
        sample = Sample(events_pb2.HostMetrics(hostname=socket.gethostname()))
        m = sample.metrics
        self._cpu(m)
        self._memory(m)
        self._disks(sample)
        self._disk_io(sample)
        self._net_io(sample)
        m.load1, m.load5, m.load15 = psutil.getloadavg()
        m.uptime_seconds = _uptime_seconds()
        try:
            m.users_logged_in = len(psutil.users())
        except OSError as err:
            sample.failures["users"] = f"{type(err).__name__}: {err}"
        self._temperatures(sample)
        return sample

    def _cpu(self, m: events_pb2.HostMetrics) -> None:
        """Utilisation since the previous sample; the first sample's is the average since boot."""
        total, cores = psutil.cpu_times(), psutil.cpu_times(percpu=True)
        if self._cpu_before is None:
            total_before, cores_before = _zero(total), [_zero(c) for c in cores]
        else:
            total_before, cores_before = self._cpu_before
        m.cpu_percent = cpu_busy_percent(total_before, total)
        if len(cores_before) == len(cores):  # a CPU was hot-plugged in between: no per-core figures once
            m.cpu_percent_per_core.extend(
                cpu_busy_percent(before, after) for before, after in zip(cores_before, cores, strict=True)
            )
        self._cpu_before = (total, cores)

    def _memory(self, m: events_pb2.HostMetrics) -> None:
        vm = psutil.virtual_memory()
        m.memory_total_bytes = vm.total
        m.memory_available_bytes = vm.available
        m.memory_used_bytes = vm.used
        swap = psutil.swap_memory()
        m.swap_total_bytes = swap.total
        m.swap_used_bytes = swap.used

    def _bounded(self, sample: Sample, kind: str, names: Iterable[T], key: Any) -> list[T]:
        items = sorted(names, key=key)
        limit = self.config.max_label_values
        if len(items) > limit:
            sample.truncated[kind] = len(items) - limit
            items = items[:limit]
        return items

    def _disks(self, sample: Sample) -> None:
        seen: set[str] = set()
        partitions = []
        for part in psutil.disk_partitions(all=False):
            if part.mountpoint in seen or _excluded(part.mountpoint, self.config.exclude_mountpoints):
                continue
            seen.add(part.mountpoint)
            partitions.append(part)
        for part in self._bounded(sample, "mountpoints", partitions, key=lambda p: p.mountpoint):
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError as err:
                sample.failures[f"disk_usage {part.mountpoint}"] = f"{type(err).__name__}: {err}"
                continue
            sample.metrics.disks.add(
                mountpoint=part.mountpoint,
                device=part.device,
                fstype=part.fstype,
                total_bytes=usage.total,
                used_bytes=usage.used,
                free_bytes=usage.free,
            )

    def _disk_io(self, sample: Sample) -> None:
        counters = psutil.disk_io_counters(perdisk=True) or {}
        names = [n for n in counters if not _excluded(n, self.config.exclude_disks)]
        for name in self._bounded(sample, "disks", names, key=str):
            io = counters[name]
            sample.metrics.disk_io.add(
                device=name,
                read_bytes=io.read_bytes,
                write_bytes=io.write_bytes,
                read_count=io.read_count,
                write_count=io.write_count,
            )

    def _net_io(self, sample: Sample) -> None:
        counters = psutil.net_io_counters(pernic=True) or {}
        names = [n for n in counters if not _excluded(n, self.config.exclude_interfaces)]
        for name in self._bounded(sample, "interfaces", names, key=str):
            io = counters[name]
            sample.metrics.net_io.add(
                interface=name,
                bytes_sent=io.bytes_sent,
                bytes_recv=io.bytes_recv,
                packets_sent=io.packets_sent,
                packets_recv=io.packets_recv,
                errors_in=io.errin,
                errors_out=io.errout,
                drops_in=io.dropin,
                drops_out=io.dropout,
            )

    def _temperatures(self, sample: Sample) -> None:
        read = getattr(psutil, "sensors_temperatures", None)
        if read is None:
            return  # not on this platform
        try:
            sensors = read()
        except OSError as err:
            sample.failures["temperatures"] = f"{type(err).__name__}: {err}"
            return
        readings: list[tuple[str, str, float]] = []
        labels: set[tuple[str, str]] = set()
        for sensor, entries in sensors.items():
            for index, entry in enumerate(entries):
                label = entry.label or f"{sensor}{index}"
                if (sensor, label) in labels:  # one series per (sensor, label): number repeats
                    label = f"{label} #{index}"
                labels.add((sensor, label))
                readings.append((sensor, label, entry.current))
        for sensor, label, celsius in self._bounded(sample, "temperatures", readings, key=lambda r: r[:2]):
            sample.metrics.temperatures.add(sensor=sensor, label=label, celsius=celsius)


def _zero(times: Any) -> Any:
    return type(times)(*(0.0 for _ in times))


def _uptime_seconds() -> int:
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        return int(time.clock_gettime(boottime))
    return int(time.time() - psutil.boot_time())
