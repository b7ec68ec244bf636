"""FlowCollector: runs a packet source through the flow table and publishes FlowRecord envelopes.

The source is a live capture on ``interface`` (a later release) or, offline, a capture file given by
the caller (``FlowCollector(config, ctx, source=FileSource(path))``, as the tests do). Records are
built as protobuf only here, when published; LossReports say how many flows a full table ended
early. Until live capture lands, a collector without a source reports itself disabled — it never
pretends to capture.
"""

from __future__ import annotations

import asyncio

from amoskys.collectors.context import CollectorContext
from amoskys.collectors.flow.config import FlowConfig
from amoskys.collectors.flow.parse import REASONS
from amoskys.collectors.flow.records import END_REASONS, FlowLoss, FlowRecordData, loss_envelope, to_envelope
from amoskys.collectors.flow.source import PacketSource
from amoskys.collectors.flow.table import FlowTable
from amoskys.errors import FatalCollectorError

#: Frames per batch between two yields to the event loop (~10-25 ms of parsing on a 2-core box).
BATCH_PACKETS = 8192
#: A live source's idle tick: timeouts still apply on a quiet link.
IDLE_TICK_SECONDS = 1.0
#: How long a stopping collector tries to publish the flows it ends (forced_end).
STOP_PUBLISH_SECONDS = 2.0

NO_INTERFACE = (
    "no interface configured (live capture lands in a later release; use `amoskys flows read FILE`)"
)


def table_for(config: FlowConfig, interface: str = "") -> FlowTable:
    """A FlowTable with the timeouts and bound of a ``[collectors.flow]`` section."""
    return FlowTable(
        tcp_idle_seconds=config.tcp_idle_timeout_seconds,
        idle_seconds=config.idle_timeout_seconds,
        active_seconds=config.active_timeout_seconds,
        linger_seconds=config.tcp_end_linger_seconds,
        max_flows=config.max_flows,
        community_id_seed=config.community_id_seed,
        interface=interface,
    )


class FlowCollector:
    """Bidirectional flow records (with Community ID) from a packet source."""

    name = "flow"
    Config = FlowConfig

    def __init__(
        self, config: FlowConfig, ctx: CollectorContext, *, source: PacketSource | None = None
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.source = source
        self.mode = "offline" if source is not None else "capture"
        self.table = table_for(config, source.interface if source is not None else config.interface)
        m = ctx.metrics
        self._m_packets = m.flow_packets
        self._m_skipped = [m.flow_packets_skipped.labels(reason) for reason in REASONS]
        self._m_records = {code: m.flow_records.labels(name) for code, name in END_REASONS.items()}
        self._m_flows = m.flow_table_flows
        self._m_evictions = m.flow_table_evictions
        self._m_unmatched = m.flow_fragments_unmatched
        self.packets = 0  # frames read from the source
        self._seen_skipped = [0] * len(REASONS)
        self._seen_evicted = 0
        self._seen_unmatched = 0

    def self_check(self) -> str | None:
        """None when there is something to read; else why not (shown as the disabled reason)."""
        if self.source is not None:
            return None
        if not self.config.interface:
            return NO_INTERFACE
        return (
            f"live capture on interface {self.config.interface!r} lands in a later release "
            "(use `amoskys flows read FILE` for capture files)"
        )

    async def run(self) -> None:
        source = self.source
        if source is None:
            raise FatalCollectorError(self.self_check() or NO_INTERFACE)
        table = self.table
        clock = self.ctx.clock
        try:
            while True:
                with self.ctx.busy():
                    count = source.feed(table, BATCH_PACKETS)
                    if source.finished:
                        table.flush()
                    elif count < BATCH_PACKETS and source.interface:
                        table.advance(clock.time_ns())
                    self._sync_metrics(count)
                    records, losses = table.drain()
                await self._publish(records, losses)
                if source.finished:
                    self.ctx.log.info(
                        "flow_source_finished",
                        packets=self.packets,
                        flows=table.flows_created,
                        skipped=sum(table.skipped),
                    )
                    return
                if count < BATCH_PACKETS:
                    await source.wait(IDLE_TICK_SECONDS)
                else:
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            await self._publish_at_stop()
            raise
        finally:
            source.close()

    async def _publish(self, records: list[FlowRecordData], losses: list[FlowLoss]) -> None:
        envelopes = [to_envelope(r) for r in records]
        envelopes += [loss_envelope(loss) for loss in losses]
        if envelopes:
            await self.ctx.publish_many(envelopes)

    async def _publish_at_stop(self) -> None:
        """End every flow (forced_end) and try, briefly, to publish them before stopping."""
        self.table.flush()
        self._sync_metrics(0)
        records, losses = self.table.drain()
        if not records and not losses:
            return
        try:
            async with asyncio.timeout(STOP_PUBLISH_SECONDS):
                await self._publish(records, losses)
        except TimeoutError:
            self.ctx.log.warning(
                "flow_records_lost_at_stop", records=len(records), timeout_seconds=STOP_PUBLISH_SECONDS
            )

    def _sync_metrics(self, packets: int) -> None:
        """Move the table's plain counters into the Prometheus metrics (once per batch)."""
        table = self.table
        if packets:
            self.packets += packets
            self._m_packets.inc(packets)
        for i, value in enumerate(table.skipped):
            if value != self._seen_skipped[i]:
                self._m_skipped[i].inc(value - self._seen_skipped[i])
                self._seen_skipped[i] = value
        for record in table.records:
            self._m_records[record.end_reason].inc()
        if table.evicted != self._seen_evicted:
            self._m_evictions.inc(table.evicted - self._seen_evicted)
            self._seen_evicted = table.evicted
        if table.fragments_unmatched != self._seen_unmatched:
            self._m_unmatched.inc(table.fragments_unmatched - self._seen_unmatched)
            self._seen_unmatched = table.fragments_unmatched
        self._m_flows.set(len(table))
