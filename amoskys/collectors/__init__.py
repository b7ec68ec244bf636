"""Collectors: one folder per collector, and the registry of them all.

The registry is built on first use so that importing a collector's config struct (as
amoskys.config does) never imports the collectors themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amoskys.collectors.base import Collector


def registry() -> dict[str, type[Collector]]:
    """Every collector class, by name (the name of its folder and of its config section)."""
    from amoskys.collectors.discovery.collector import DiscoveryCollector
    from amoskys.collectors.flow.collector import FlowCollector
    from amoskys.collectors.heartbeat.collector import HeartbeatCollector
    from amoskys.collectors.host.collector import HostCollector
    from amoskys.collectors.process.collector import ProcessCollector
    from amoskys.collectors.snmp.collector import SnmpCollector

    classes: list[type[Collector]] = [
        DiscoveryCollector,
        FlowCollector,
        HeartbeatCollector,
        HostCollector,
        ProcessCollector,
        SnmpCollector,
    ]
    return {cls.name: cls for cls in classes}
