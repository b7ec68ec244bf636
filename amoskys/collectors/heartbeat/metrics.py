"""The heartbeat collector's series: when it last published (alert when it stops moving)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge


class HeartbeatMetrics:
    """Every ``amoskys_heartbeat_*`` series, on the registry the appliance gives (``Metrics.component``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.last_timestamp = Gauge(
            "amoskys_heartbeat_last_timestamp_seconds",
            "Unix time of the last heartbeat this appliance published (0: none yet).",
            registry=registry,
        )
