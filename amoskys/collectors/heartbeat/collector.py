"""HeartbeatCollector: publishes a Heartbeat body (version, host, uptime, collectors running)."""

from __future__ import annotations

import platform

from amoskys.collectors.context import CollectorContext
from amoskys.collectors.heartbeat.config import HeartbeatConfig
from amoskys.collectors.heartbeat.metrics import HeartbeatMetrics
from amoskys.proto import events_pb2


class HeartbeatCollector:
    """The appliance's own liveness every `interval_seconds`: upstream sees that a box is alive."""

    name = "heartbeat"
    Config = HeartbeatConfig
    Metrics = HeartbeatMetrics
    mode = "timer"

    def __init__(self, config: HeartbeatConfig, ctx: CollectorContext) -> None:
        self.config = config
        self.ctx = ctx
        self.python = platform.python_version()
        self.metrics = ctx.metrics.component(HeartbeatMetrics)

    async def run(self) -> None:
        await self.ctx.poll(self.config.interval_seconds, self.beat)

    def build(self) -> events_pb2.Envelope:
        """One Heartbeat envelope as of now (not yet stamped)."""
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
        return envelope

    async def beat(self) -> None:
        envelope = self.build()
        await self.ctx.publish(envelope)
        self.metrics.last_timestamp.set(envelope.ts_ns / 1e9)
