"""The ``[collectors.discovery]`` config section."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

import msgspec

from amoskys.collectors.base import CollectorConfig

Switch = Literal["off", "on"]

#: The largest subnet swept (a /16: 65,536 addresses, about 11 minutes at 100 packets/s).
MIN_PREFIX = 16


class DiscoveryConfig(CollectorConfig, frozen=True):
    """Sweep `subnets` with ARP on `interface`, watch ARP/DHCP passively, keep a device inventory."""

    enabled: bool = True
    interface: str = ""
    subnets: list[str] = msgspec.field(default_factory=list)
    sweep_interval_seconds: Annotated[float, msgspec.Meta(ge=10, le=86_400)] = 300.0
    rate_packets_per_second: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    reply_timeout_seconds: Annotated[float, msgspec.Meta(ge=0.05, le=30)] = 1.0
    passive: Switch = "on"
    neighbour_table_interval_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 30.0
    gone_after_seconds: Annotated[float, msgspec.Meta(ge=1, le=2_592_000)] = 3600.0
    probe: Switch = "off"
    probe_ports: list[Annotated[int, msgspec.Meta(ge=1, le=65_535)]] = msgspec.field(
        default_factory=lambda: [22, 80, 443]
    )
    probe_rate_per_second: Annotated[float, msgspec.Meta(ge=0.1, le=1000)] = 10.0
    probe_timeout_seconds: Annotated[float, msgspec.Meta(ge=0.05, le=30)] = 1.0
    oui_file: str = "/usr/share/ieee-data/oui.csv"

    def __post_init__(self) -> None:
        for text in self.subnets:
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError as err:
                raise ValueError(f"`subnets`: {text!r} is not an IPv4 network ({err})") from err
            if net.version != 4:
                raise ValueError(f"`subnets`: {text!r} is IPv6; ARP sweeps IPv4 subnets only")
            if net.prefixlen < MIN_PREFIX:
                raise ValueError(
                    f"`subnets`: {text!r} is larger than a /{MIN_PREFIX} "
                    f"({net.num_addresses} addresses); split it or narrow it"
                )

    def networks(self) -> tuple[ipaddress.IPv4Network, ...]:
        """The configured subnets as networks (host bits cleared)."""
        return tuple(ipaddress.IPv4Network(text, strict=False) for text in self.subnets)
