"""The ``[collectors.flow]`` config section."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from amoskys.collectors.base import CollectorConfig
from amoskys.collectors.flow.bpf import BpfError, compile_filter

Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]


class FlowConfig(CollectorConfig, frozen=True):
    """The flow meter: which interface to capture on, and the flow table's timeouts and bound.

    Defaults, against the meters network engineers compare us with (reference/flows.md): TCP idle
    300 s and other protocols 60 s as Zeek (softflowd waits 3600 s / 300 s, which keeps dead flows
    for an hour; Cisco's 15 s splits quiet sessions); an interim record every 60 s so long flows are
    visible while they last (Packetbeat: 10 s, Cisco: 1800 s, Zeek: only at the end); 5 s after an
    RST or after FINs both ways, as Zeek's close delay (softflowd: 120 s / 300 s), so late ACKs and
    retransmissions still count in the flow.
    """

    enabled: bool = True
    # The network interface to capture on (AF_PACKET, needs CAP_NET_RAW); empty: none.
    interface: str = ""
    # A tcpdump-style capture filter compiled by libpcap into a kernel BPF filter; empty: every frame.
    filter: str = ""
    # "on": the interface receives frames for every MAC address (a SPAN or mirror port needs it).
    promiscuous: Literal["on", "off"] = "on"
    # Size of the kernel's capture ring (mmap'ed, TPACKET_V3): what absorbs bursts the loop cannot
    # take at once; a ring too small shows as kernel drops.
    ring_size_mib: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    tcp_idle_timeout_seconds: Seconds = 300.0
    idle_timeout_seconds: Seconds = 60.0
    active_timeout_seconds: Seconds = 60.0
    tcp_end_linger_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 5.0
    max_flows: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000
    community_id_seed: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 0

    def __post_init__(self) -> None:
        if self.interface and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}", self.interface):
            raise ValueError(
                f"`interface`: expected a network interface name (1-15 letters, digits, '_', '.', "
                f"':', '@' or '-'), got {self.interface!r}"
            )
        if self.filter:
            try:
                compile_filter(self.filter)
            except BpfError as err:
                if not err.missing_library:  # without libpcap the collector says so when it starts
                    raise ValueError(f"`filter`: {err}") from err
