"""A port scan: one source opening flows to at least `ports` distinct ports, or to at least `hosts`
distinct hosts, within `window_seconds` (judged per observer: the appliance's capture, or an agent's).

Per source address it keeps the last time it opened a flow to each port and to each host; a source
that reaches a threshold is reported and starts counting afresh (a long scan is reported again each
time it reaches a threshold, which the alert counts as repeats). At most `MAX_SOURCES` sources are
followed (the longest-followed is forgotten first), so memory stays bounded under any traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amoskys.config import PortScanConfig
from amoskys.detections.builtin.finding import Detector, Finding, FlowStart, builtin_rule

RULE = builtin_rule(
    "port_scan",
    "Port scan",
    "medium",
    tags=("attack.t1046",),
    description="One source opened flows to many ports or many hosts within a short window.",
)
MAX_SOURCES = 65_536
#: Protocols with ports (TCP, UDP, SCTP): others count toward hosts only.
_PORTED = frozenset({6, 17, 132})
_NS = 1_000_000_000
_PROTO = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "ipv6-icmp"}


@dataclass(slots=True)
class _Source:
    ports: dict[int, int] = field(default_factory=dict)  # port -> last time a flow opened to it
    hosts: dict[str, int] = field(default_factory=dict)  # host -> likewise
    since: int = 0  # first flow counted


def _prune(seen: dict[int, int] | dict[str, int], cutoff: int) -> None:
    for k in [k for k, t in seen.items() if t < cutoff]:
        del seen[k]  # type: ignore[arg-type]


class PortScan(Detector):
    name = "port_scan"
    rules = (RULE,)
    flows = True

    def __init__(self, config: PortScanConfig) -> None:
        self.ports = config.ports
        self.hosts = config.hosts
        self.window_ns = int(config.window_seconds * _NS)
        self._sources: dict[tuple[str, str], _Source] = {}

    def flow(self, start: FlowStart) -> list[Finding]:
        key = (start.host, start.src)
        s = self._sources.get(key)
        ts = start.ts_ns
        if s is None:
            if len(self._sources) >= MAX_SOURCES:
                del self._sources[next(iter(self._sources))]
            s = self._sources[key] = _Source(since=ts)
        if start.proto in _PORTED:
            s.ports[start.dport] = ts
        s.hosts[start.dst] = ts
        if len(s.ports) < self.ports and len(s.hosts) < self.hosts:
            return []
        cutoff = ts - self.window_ns
        _prune(s.ports, cutoff)
        _prune(s.hosts, cutoff)
        if len(s.ports) < self.ports and len(s.hosts) < self.hosts:
            return []
        by_ports = len(s.ports) >= self.ports
        first = min(min(s.ports.values(), default=ts), min(s.hosts.values(), default=ts))
        sample = sorted(s.ports)[:20] if by_ports else sorted(s.hosts)[:20]
        what = f"{len(s.ports)} ports" if by_ports else f"{len(s.hosts)} hosts"
        finding = Finding(
            RULE,
            start.host,
            ts,
            f"{start.src} scanned {what} in {(ts - first) / _NS:.1f} s"
            + (f" on {start.dst}" if len(s.hosts) == 1 else ""),
            {
                "scanner": start.src,
                "ports": str(len(s.ports)),
                "hosts": str(len(s.hosts)),
                "by": "ports" if by_ports else "hosts",
                "sample": ",".join(str(x) for x in sample),
                "protocol": _PROTO.get(start.proto, str(start.proto)),
                "interface": start.interface,
                "seconds": f"{(ts - first) / _NS:.3f}",
            },
            evidence=start.event_id,
            key=f"{start.src}@{ts}",
        )
        del self._sources[key]  # counts afresh
        return [finding]
