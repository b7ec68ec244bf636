"""The snmp collector's series: polls per target and their outcome, and per-interface rates when enabled."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SnmpMetrics:
    """Every ``amoskys_snmp_*`` series, on the registry the appliance gives (``Metrics.component``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        # -- snmp (label `target`: configured target names, bounded by the config)
        self.snmp_target_up = Gauge(
            "amoskys_snmp_target_up",
            "1 when the target's last poll succeeded, else 0.",
            ["target"],
            registry=r,
        )
        self.snmp_poll_duration = Gauge(
            "amoskys_snmp_poll_duration_seconds",
            "Duration of the target's last poll.",
            ["target"],
            registry=r,
        )
        self.snmp_poll_seconds = Histogram(
            "amoskys_snmp_poll_seconds",
            "Poll latency of every target (one histogram, no labels: bounded series).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self.snmp_polls = Counter(
            "amoskys_snmp_polls_total",
            "Polls by target and outcome (ok, timeout, deadline, auth, resolve, error).",
            ["target", "outcome"],
            registry=r,
        )
        self.snmp_polls_skipped = Counter(
            "amoskys_snmp_polls_skipped_total",
            "Scheduled polls not made, by reason (backoff: the target is unreachable; late: a slot came too late).",
            ["target", "reason"],
            registry=r,
        )
        self.snmp_varbinds = Counter(
            "amoskys_snmp_varbinds_total",
            "Variable bindings received from the target.",
            ["target"],
            registry=r,
        )
        self.snmp_uptime = Gauge(
            "amoskys_snmp_target_uptime_seconds",
            "The target's sysUpTime at its last poll.",
            ["target"],
            registry=r,
        )
        self.snmp_interfaces = Gauge(
            "amoskys_snmp_target_interfaces",
            "Interfaces in the target's last sample.",
            ["target"],
            registry=r,
        )
        self.snmp_counter_resets = Counter(
            "amoskys_snmp_counter_resets_total",
            "Interfaces whose counters broke between two polls (agent restart, counter reset): no rate then.",
            ["target"],
            registry=r,
        )
        # per interface only with interface_metrics = "on", capped by max_interface_series
        self.snmp_interface_in_bps = Gauge(
            "amoskys_snmp_interface_in_bits_per_second",
            "Inbound rate of an interface over its last two polls.",
            ["target", "interface"],
            registry=r,
        )
        self.snmp_interface_out_bps = Gauge(
            "amoskys_snmp_interface_out_bits_per_second",
            "Outbound rate of an interface over its last two polls.",
            ["target", "interface"],
            registry=r,
        )
        self.snmp_interface_oper_up = Gauge(
            "amoskys_snmp_interface_oper_up",
            "1 when the interface's ifOperStatus is up(1), else 0.",
            ["target", "interface"],
            registry=r,
        )
