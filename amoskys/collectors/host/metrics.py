"""The host collector's series: the latest HostMetrics sample, rendered at scrape time (HostExporter).

The operating system's own counters (disk and network bytes, packets, errors) are exported as
counters with their values since boot, so ``rate()`` works across restarts of the appliance; levels
(CPU, memory, filesystems, load, temperatures) are gauges. Label values come from the host
collector, which bounds them (``max_label_values`` per kind).

Series (all ``amoskys_host_*``): ``cpu_utilization_ratio{cpu}`` (``total``, ``0``, ``1``, ...),
``memory_bytes{kind}``, ``swap_bytes{kind}``, ``filesystem_bytes{mountpoint,kind}``,
``disk_read_bytes_total{device}``, ``disk_written_bytes_total{device}``, ``disk_reads_total{device}``,
``disk_writes_total{device}``, ``network_received_bytes_total{interface}``,
``network_sent_bytes_total{interface}``, ``network_received_packets_total{interface}``,
``network_sent_packets_total{interface}``, ``network_errors_total{interface,direction}``,
``network_drops_total{interface,direction}``, ``load_average{period}``, ``uptime_seconds``,
``users_logged_in``, ``temperature_celsius{sensor,label}``, ``sample_timestamp_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from amoskys.proto import events_pb2


class HostExporter(Collector):
    """Holds the latest sample (swapped in whole by ``update()``: safe to scrape from a thread)."""

    def __init__(self) -> None:
        self._latest: tuple[events_pb2.HostMetrics, int] | None = None

    def update(self, sample: events_pb2.HostMetrics, ts_ns: int) -> None:
        """Export `sample` (taken at `ts_ns`, UTC) from now on; the caller never mutates it again."""
        self._latest = (sample, ts_ns)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the series depend on the machine; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        latest = self._latest
        if latest is None:
            return
        m, ts_ns = latest
        yield from _cpu_memory(m)
        yield from _disks(m)
        yield from _network(m)
        yield from _system(m, ts_ns)


class HostMetrics:
    """The host collector's series on the registry the appliance gives (``Metrics.component``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.host = HostExporter()
        registry.register(self.host)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"amoskys_host_{name}", doc, labels=labels)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(f"amoskys_host_{name}", doc, labels=labels)


def _cpu_memory(m: events_pb2.HostMetrics) -> Iterator[Metric]:
    cpu = _gauge("cpu_utilization_ratio", "Share of CPU time not idle since the previous sample.", ["cpu"])
    cpu.add_metric(["total"], m.cpu_percent / 100)
    for core, percent in enumerate(m.cpu_percent_per_core):
        cpu.add_metric([str(core)], percent / 100)
    yield cpu
    memory = _gauge("memory_bytes", "Physical memory: total, available, used.", ["kind"])
    memory.add_metric(["total"], m.memory_total_bytes)
    memory.add_metric(["available"], m.memory_available_bytes)
    memory.add_metric(["used"], m.memory_used_bytes)
    yield memory
    swap = _gauge("swap_bytes", "Swap space: total, used.", ["kind"])
    swap.add_metric(["total"], m.swap_total_bytes)
    swap.add_metric(["used"], m.swap_used_bytes)
    yield swap


def _disks(m: events_pb2.HostMetrics) -> Iterator[Metric]:
    fs = _gauge("filesystem_bytes", "Mounted filesystems: total, used, free.", ["mountpoint", "kind"])
    for d in m.disks:
        fs.add_metric([d.mountpoint, "total"], d.total_bytes)
        fs.add_metric([d.mountpoint, "used"], d.used_bytes)
        fs.add_metric([d.mountpoint, "free"], d.free_bytes)
    yield fs
    read_bytes = _counter("disk_read_bytes", "Bytes read from the block device since boot.", ["device"])
    written = _counter("disk_written_bytes", "Bytes written to the block device since boot.", ["device"])
    reads = _counter("disk_reads", "Read operations of the block device since boot.", ["device"])
    writes = _counter("disk_writes", "Write operations of the block device since boot.", ["device"])
    for io in m.disk_io:
        read_bytes.add_metric([io.device], io.read_bytes)
        written.add_metric([io.device], io.write_bytes)
        reads.add_metric([io.device], io.read_count)
        writes.add_metric([io.device], io.write_count)
    yield from (read_bytes, written, reads, writes)


def _network(m: events_pb2.HostMetrics) -> Iterator[Metric]:
    labels = ["interface"]
    rx = _counter("network_received_bytes", "Bytes received by the interface since boot.", labels)
    tx = _counter("network_sent_bytes", "Bytes sent by the interface since boot.", labels)
    rx_packets = _counter("network_received_packets", "Packets received by the interface since boot.", labels)
    tx_packets = _counter("network_sent_packets", "Packets sent by the interface since boot.", labels)
    errors = _counter("network_errors", "Errors of the interface since boot.", ["interface", "direction"])
    drops = _counter(
        "network_drops", "Dropped packets of the interface since boot.", ["interface", "direction"]
    )
    for n in m.net_io:
        rx.add_metric([n.interface], n.bytes_recv)
        tx.add_metric([n.interface], n.bytes_sent)
        rx_packets.add_metric([n.interface], n.packets_recv)
        tx_packets.add_metric([n.interface], n.packets_sent)
        errors.add_metric([n.interface, "in"], n.errors_in)
        errors.add_metric([n.interface, "out"], n.errors_out)
        drops.add_metric([n.interface, "in"], n.drops_in)
        drops.add_metric([n.interface, "out"], n.drops_out)
    yield from (rx, tx, rx_packets, tx_packets, errors, drops)


def _system(m: events_pb2.HostMetrics, ts_ns: int) -> Iterator[Metric]:
    load = _gauge("load_average", "Run-queue load average over 1, 5 and 15 minutes.", ["period"])
    load.add_metric(["1m"], m.load1)
    load.add_metric(["5m"], m.load5)
    load.add_metric(["15m"], m.load15)
    yield load
    uptime = _gauge("uptime_seconds", "Seconds since the host booted.")
    uptime.add_metric([], m.uptime_seconds)
    yield uptime
    users = _gauge("users_logged_in", "Login sessions (utmp).")
    users.add_metric([], m.users_logged_in)
    yield users
    temps = _gauge("temperature_celsius", "Hardware temperature sensors, where present.", ["sensor", "label"])
    for t in m.temperatures:
        temps.add_metric([t.sensor, t.label], t.celsius)
    yield temps
    sampled = _gauge("sample_timestamp_seconds", "When the exported host sample was taken (Unix time).")
    sampled.add_metric([], ts_ns / 1e9)
    yield sampled
