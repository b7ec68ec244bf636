"""A real store (SQLite in tmp_path), the real bus core and the built-in detectors over them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amoskys.bus.core import Bus
from amoskys.collectors.flow_starts import FlowStarts
from amoskys.collectors.taps import PacketTaps
from amoskys.config import BusConfig, DetectionsConfig
from amoskys.detections.builtin import registry
from amoskys.detections.builtin.cert_expiry import CertFile
from amoskys.detections.builtin.runner import BuiltinDetections
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2 as ev
from amoskys.store import Store
from amoskys.wiring import build_bus

from ..runtime_harness import alert_rows, running_store

NAME = "box"


@dataclass
class Running:
    store: Store
    bus: Bus
    runner: BuiltinDetections
    stamper: EnvelopeStamper
    metrics: Metrics
    db: Path
    flow_starts: FlowStarts
    taps: PacketTaps

    async def publish(self, envelopes: Sequence[ev.Envelope]) -> None:
        await self.bus.publish(envelopes)

    async def alerts(self, rule_id: str | None = None) -> list[dict[str, Any]]:
        rows = await alert_rows(self.db)
        return [r for r in rows if rule_id is None or r["rule_id"] == rule_id]

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def builtin(
    tmp_path: Path,
    config: DetectionsConfig | None = None,
    *,
    silent_after_heartbeats: int = 3,
    certs: Callable[[], Sequence[CertFile]] = lambda: (),
    tick_seconds: float = 1.0,
    before: Callable[[Store, EnvelopeStamper], Any] | None = None,
) -> AsyncIterator[Running]:
    """The built-in detectors (started and running) over a running store and a bus; `before` runs on the
    store before they start (to store what they find at start)."""
    metrics = Metrics()
    db = tmp_path / "events.db"
    config = config or DetectionsConfig()
    async with running_store(db, metrics) as store:
        stamper = EnvelopeStamper(NAME)
        bus, _ = build_bus(store, metrics, BusConfig(), stamper=stamper)
        if before is not None:
            await before(store, stamper)
        taps = PacketTaps()
        starts = taps.flow_starts
        detectors = registry.build(
            config, silent_after_heartbeats=silent_after_heartbeats, appliance=NAME, certs=certs
        )
        runner = BuiltinDetections(
            config,
            detectors,
            store=store,
            bus=bus,
            stamper=stamper,
            metrics=metrics,
            appliance=NAME,
            flow_starts=starts,
            tick_seconds=tick_seconds,
        )
        await runner.start()
        task = asyncio.create_task(runner.run())
        try:
            yield Running(store, bus, runner, stamper, metrics, db, starts, taps)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await runner.close()
            await bus.close()
