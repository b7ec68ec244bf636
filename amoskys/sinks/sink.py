"""What every alert sink shares: Alert events only, decoded and filtered off the loop when sealed.

A subclass says how a batch of alerts is rendered (`render`, in a worker thread) and delivered
(`deliver`). A batch whose alerts were all filtered out is acked at once: the cursor moves past it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import DecodeError

from amoskys.forwarders.base import Batch, SendResult, SendStatus
from amoskys.proto import events_pb2
from amoskys.sinks.alerts import AlertFilter, SinkAlert
from amoskys.sinks.metrics import FILTERED, UNREADABLE, SinkMetrics
from amoskys.store.outbox import Row

ALERT_KINDS = frozenset({"alert"})


class AlertSink:
    """The part of `amoskys.forwarders.base.Sink` every alert sink has in common."""

    kinds: frozenset[str] | None = ALERT_KINDS

    def __init__(self, name: str, alert_filter: AlertFilter, metrics: SinkMetrics) -> None:
        self.name = name
        self._filter = alert_filter
        self.metrics = metrics

    async def resume(self, acked_seq: int) -> list[Batch]:
        return []  # nothing is sealed durably: unacked rows are read and rendered again

    async def seal(self, rows: Sequence[Row]) -> Batch:
        """Decode, filter and render the rows in a worker thread; the payload is None when no alert
        is left to deliver."""
        return Batch(rows, await asyncio.to_thread(self._prepare, rows))

    def _prepare(self, rows: Sequence[Row]) -> Any:
        alerts: list[SinkAlert] = []
        filtered = unreadable = 0
        for store_seq, received_ns, raw in rows:
            try:
                envelope = events_pb2.Envelope.FromString(raw)
            except DecodeError:
                unreadable += 1
                continue
            if envelope.WhichOneof("body") != "alert":
                continue
            if not self._filter.passes(envelope.alert):
                filtered += 1
                continue
            alerts.append(SinkAlert(store_seq, received_ns, envelope))
        if filtered:
            self.metrics.alerts.labels(self.name, FILTERED).inc(filtered)
        if unreadable:
            self.metrics.alerts.labels(self.name, UNREADABLE).inc(unreadable)
        return self.render(alerts) if alerts else None

    def render(self, alerts: list[SinkAlert]) -> Any:
        """The payload `deliver` sends for these alerts (runs in a worker thread)."""
        raise NotImplementedError

    async def send(self, batch: Batch) -> SendResult:
        if batch.payload is None:
            return SendResult(SendStatus.OK)
        return await self.deliver(batch.payload)

    async def deliver(self, payload: Any) -> SendResult:
        """One attempt to deliver a rendered payload; transport errors are a RETRY result."""
        raise NotImplementedError

    async def close(self) -> None:
        return None
