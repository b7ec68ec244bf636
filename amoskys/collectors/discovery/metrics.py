"""The discovery collector's series: the ARP sweep, the inventory, passive sightings and the opt-in probe."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DiscoveryMetrics:
    """Every ``amoskys_discovery_*`` series, on the registry the appliance gives (``Metrics.component``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        # -- discovery (label `how`: arp_sweep, arp_passive, dhcp, neighbour_table — a fixed list)
        self.discovery_arp_requests = Counter(
            "amoskys_discovery_arp_requests_total",
            "ARP requests the discovery sweep sent (retries included).",
            registry=r,
        )
        self.discovery_arp_replies = Counter(
            "amoskys_discovery_arp_replies_total",
            "ARP replies that answered a sweep's request.",
            registry=r,
        )
        self.discovery_sweep_duration = Gauge(
            "amoskys_discovery_sweep_duration_seconds",
            "Wall-clock time of the last ARP sweep of all configured subnets.",
            registry=r,
        )
        self.discovery_devices = Gauge(
            "amoskys_discovery_devices",
            "Devices in the discovery inventory that are present (not gone).",
            registry=r,
        )
        self.discovery_observations = Counter(
            "amoskys_discovery_observations_total",
            "Sightings of a device (MAC, maybe IP) fed to the inventory, by how it was seen.",
            ["how"],
            registry=r,
        )
        self.discovery_passive_dropped = Counter(
            "amoskys_discovery_passive_dropped_total",
            "Passive ARP/DHCP frames dropped because the discovery queue was full (intentional: bounded memory).",
            registry=r,
        )
        self.discovery_probe_connects = Counter(
            "amoskys_discovery_probe_connects_total",
            "TCP connects made by the opt-in service probe.",
            registry=r,
        )
