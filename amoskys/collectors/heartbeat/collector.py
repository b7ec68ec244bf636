"""HeartbeatCollector: publishes a Heartbeat body (version, host, OS, addresses, uptime, collectors
running, the outbox's lag upstream)."""

from __future__ import annotations

import asyncio
import ipaddress
import platform
import socket

import psutil

from amoskys.collectors.context import CollectorContext
from amoskys.collectors.heartbeat.config import HeartbeatConfig
from amoskys.collectors.heartbeat.metrics import HeartbeatMetrics
from amoskys.proto import events_pb2


def host_addresses() -> list[str]:
    """The host's IPv4 and IPv6 addresses, sorted, without loopback and link-local ones (blocking:
    one getifaddrs call; run it in a worker thread)."""
    found: set[str] = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = ipaddress.ip_address(a.address.split("%", 1)[0])
            except ValueError:
                continue
            if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
                found.add(str(ip))
    return sorted(found, key=lambda text: (":" in text, text))


def os_description() -> str:
    """``<system> <release> <machine>``, as uname says (``Linux 6.1.0-18-amd64 x86_64``)."""
    return " ".join(part for part in (platform.system(), platform.release(), platform.machine()) if part)


class HeartbeatCollector:
    """The appliance's (or agent's) own liveness every `interval_seconds`: upstream sees that a box is
    alive, what it runs on, and how far behind its outbox is."""

    name = "heartbeat"
    Config = HeartbeatConfig
    Metrics = HeartbeatMetrics
    mode = "timer"

    def __init__(self, config: HeartbeatConfig, ctx: CollectorContext) -> None:
        self.config = config
        self.ctx = ctx
        self.python = platform.python_version()
        self.os = os_description()
        self.metrics = ctx.metrics.component(HeartbeatMetrics)

    async def run(self) -> None:
        await self.ctx.poll(self.config.interval_seconds, self.beat)

    def build(self, addresses: list[str] | None = None) -> events_pb2.Envelope:
        """One Heartbeat envelope as of now (not yet stamped), naming `addresses`."""
        info = self.ctx.appliance
        now_ns = self.ctx.clock.time_ns()
        envelope = events_pb2.Envelope(ts_ns=now_ns)
        body = envelope.heartbeat
        body.version = info.version
        body.hostname = info.hostname
        body.mode = info.mode
        body.started_ns = info.started_ns
        body.uptime_seconds = max(0, now_ns - info.started_ns) / 1e9
        body.collectors_running = self.ctx.collectors_running()
        body.python = self.python
        lag_events, lag_seconds = info.outbox_lag() if info.outbox_lag is not None else (0, 0.0)
        body.outbox_lag_events = max(0, lag_events)
        body.outbox_lag_seconds = max(0.0, lag_seconds)
        body.os = self.os
        body.addresses.extend(addresses or ())
        body.interval_seconds = self.config.interval_seconds
        return envelope

    async def beat(self) -> None:
        envelope = self.build(await asyncio.to_thread(host_addresses))
        await self.ctx.publish(envelope)
        self.metrics.last_timestamp.set(envelope.ts_ns / 1e9)
