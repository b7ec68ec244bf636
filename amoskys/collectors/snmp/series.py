"""Prometheus series of the SNMP collector: per target always, per interface only when enabled.

Per-interface series are capped (`max_interface_series` label sets over all targets): past the cap,
new interfaces get no series and one warning says so. Series of interfaces that vanish, and of every
target when the collector stops, are removed — nothing stale lingers on /metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amoskys.proto import events_pb2

if TYPE_CHECKING:
    from prometheus_client import Gauge
    from structlog.typing import FilteringBoundLogger

    from amoskys.collectors.snmp.metrics import SnmpMetrics


def interface_label(iface: events_pb2.SnmpInterface) -> str:
    """ifName, else ifDescr, else the ifIndex."""
    return iface.name or iface.descr or str(iface.if_index)


class SnmpSeries:
    """Sets and removes the collector's labelled gauges as samples come in."""

    def __init__(
        self, metrics: SnmpMetrics, log: FilteringBoundLogger, *, per_interface: bool, cap: int
    ) -> None:
        self.metrics = metrics
        self.log = log
        self.per_interface = per_interface
        self.cap = cap
        self.interfaces: dict[str, set[str]] = {}  # target → interface labels with series
        self.targets: set[str] = set()
        self.capped = False

    def _count(self) -> int:
        return sum(len(labels) for labels in self.interfaces.values())

    def update(self, sample: events_pb2.SnmpSample) -> None:
        """Reflect one sample (reachable or not) in the gauges."""
        m, target = self.metrics, sample.target
        self.targets.add(target)
        m.snmp_target_up.labels(target).set(1 if sample.reachable else 0)
        m.snmp_poll_duration.labels(target).set(sample.poll_seconds)
        if not sample.reachable:
            return
        m.snmp_uptime.labels(target).set(sample.system.uptime_ticks / 100)
        m.snmp_interfaces.labels(target).set(len(sample.interfaces))
        if self.per_interface:
            self._interfaces(sample)

    def _interfaces(self, sample: events_pb2.SnmpSample) -> None:
        m, target = self.metrics, sample.target
        had = self.interfaces.setdefault(target, set())
        now: set[str] = set()
        budget = self.cap - (self._count() - len(had))
        for iface in sample.interfaces:
            label = interface_label(iface)
            if label in now:
                label = f"{label} ({iface.if_index})"
            if label not in had and len(now) >= budget:
                if not self.capped:
                    self.capped = True
                    self.log.warning(
                        "snmp_interface_series_capped", max_interface_series=self.cap, target=target
                    )
                continue
            now.add(label)
            m.snmp_interface_oper_up.labels(target, label).set(1 if iface.oper_status == 1 else 0)
            for gauge, has, value in (
                (m.snmp_interface_in_bps, iface.HasField("in_bps"), iface.in_bps),
                (m.snmp_interface_out_bps, iface.HasField("out_bps"), iface.out_bps),
            ):
                if has:
                    gauge.labels(target, label).set(value)
                elif label in had:
                    _remove(gauge, target, label)
        for label in had - now:
            for gauge in (m.snmp_interface_oper_up, m.snmp_interface_in_bps, m.snmp_interface_out_bps):
                _remove(gauge, target, label)
        self.interfaces[target] = now

    def clear(self) -> None:
        """Remove every gauge series this collector set (counters stay: they only ever grow)."""
        m = self.metrics
        for target in self.targets:
            for gauge in (m.snmp_target_up, m.snmp_poll_duration, m.snmp_uptime, m.snmp_interfaces):
                _remove(gauge, target)
        for target, labels in self.interfaces.items():
            for label in labels:
                for gauge in (m.snmp_interface_oper_up, m.snmp_interface_in_bps, m.snmp_interface_out_bps):
                    _remove(gauge, target, label)
        self.targets.clear()
        self.interfaces.clear()


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass
