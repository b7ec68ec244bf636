"""FlowCollector: runs a packet source through the flow table and publishes FlowRecord envelopes.

The source is a live capture on ``interface`` (:class:`capture.LiveCapture`, a TPACKET_V3 ring) or,
offline, a capture file given by the caller (``FlowCollector(config, ctx, source=FileSource(path))``,
as the tests do). Records are built as protobuf only here, when published. LossReports say how many
flows a full table ended early and how many frames the kernel dropped because the ring was full
(read once a second, reported at most every 10 s). Passive observers (discovery's ARP/DHCP) join the
packet path with :meth:`FlowCollector.add_observer`. While an in-process detector takes flow starts
(``ctx.packet_taps.flow_starts``), each new flow is handed to it once, at the end of the turn that saw
its first packet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from amoskys.collectors.base import NotConfigured
from amoskys.collectors.context import CollectorContext
from amoskys.collectors.flow import bpf
from amoskys.collectors.flow.capture import MIB, LiveCapture
from amoskys.collectors.flow.config import FlowConfig
from amoskys.collectors.flow.metrics import FlowMetrics
from amoskys.collectors.flow.parse import REASONS
from amoskys.collectors.flow.records import (
    END_REASONS,
    FlowLoss,
    FlowRecordData,
    kernel_loss_envelope,
    loss_envelope,
    to_envelope,
)
from amoskys.collectors.flow.source import PacketSource
from amoskys.collectors.flow.table import FlowTable, PacketObserver
from amoskys.errors import FatalCollectorError
from amoskys.proto import events_pb2

#: Frames metered per turn on the loop from the mapped ring, between two yields (~1 ms on a 2-core
#: box: at 50k pkt/s, 2,048-frame turns of ~10 ms were the loop's worst lag).
LIVE_BATCH_PACKETS = 256
#: Frames per turn of a pcap file, read and metered in a worker thread (fewer thread hops).
FILE_BATCH_PACKETS = 2048
#: Envelopes built and published per call to the sink (a protobuf costs ~10 µs to build).
PUBLISH_CHUNK = 500
#: A live source's idle tick: timeouts still apply on a quiet link.
IDLE_TICK_SECONDS = 1.0
#: How long a stopping collector tries to publish the flows it ends (forced_end).
STOP_PUBLISH_SECONDS = 2.0

#: How often the kernel's drop counters are read, and the shortest window of a kernel LossReport.
KERNEL_STATS_SECONDS = 1.0
KERNEL_LOSS_REPORT_SECONDS = 10.0

NO_INTERFACE = (
    "no interface configured (set `interface` in [collectors.flow]; "
    "use `amoskys flows read FILE` for capture files)"
)
NEEDS_CAP_NET_RAW = "needs CAP_NET_RAW"


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
    Metrics = FlowMetrics

    def __init__(
        self, config: FlowConfig, ctx: CollectorContext, *, source: PacketSource | None = None
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.offline = source is not None
        self.capture: LiveCapture | None = None
        if source is None and config.interface:
            source = self.capture = LiveCapture(
                config.interface,
                ring_bytes=config.ring_size_mib * MIB,
                filter_expression=config.filter,
                promiscuous=config.promiscuous == "on",
            )
        self.source = source
        self.mode = "offline" if self.offline else "capture"
        self.table = table_for(config, source.interface if source is not None else config.interface)
        m = ctx.metrics.component(FlowMetrics)
        self._m_packets = m.flow_packets
        self._m_skipped = [m.flow_packets_skipped.labels(reason) for reason in REASONS]
        self._m_records = {code: m.flow_records.labels(name) for code, name in END_REASONS.items()}
        self._m_flows = m.flow_table_flows
        self._m_evictions = m.flow_table_evictions
        self._m_unmatched = m.flow_fragments_unmatched
        self._m_kernel_packets = m.flow_kernel_packets
        self._m_kernel_drops = m.flow_kernel_drops
        self.kernel_packets = 0  # frames the kernel passed the filter (drops included)
        self.kernel_drops = 0
        self._drops_pending = 0  # not yet in a LossReport
        self._drops_since_ns = 0  # start of the pending window
        self._stats_ns = 0  # wall clock of the previous stats read
        self._next_stats = 0.0  # monotonic
        self._next_loss_report = 0.0  # monotonic
        self._dropping = False
        self.packets = 0  # frames read from the source
        self._seen_skipped = [0] * len(REASONS)
        self._seen_evicted = 0
        self._seen_unmatched = 0

    def self_check(self) -> str | None:
        """None when there is something to read; else why not (shown as the disabled reason)."""
        if self.offline:
            return None
        if not self.config.interface:
            return NotConfigured(NO_INTERFACE)
        if not self.ctx.has_capability("CAP_NET_RAW"):
            return NEEDS_CAP_NET_RAW
        if self.config.filter and not bpf.libpcap_available():
            return (
                f"the capture filter needs libpcap ({bpf.LIBPCAP_SONAME}), which is not installed: "
                f"sudo apt-get install -y {bpf.LIBPCAP_PACKAGE}"
            )
        return None

    def add_observer(self, observer: PacketObserver) -> None:
        """Let a passive watcher see the frames it asks for (see ``table.PacketObserver``) on this
        collector's packet path; its frames come from ``self.interface``."""
        self.table.add_observer(observer)

    @property
    def interface(self) -> str:
        """The capture interface ("" when metering a file)."""
        return self.source.interface if self.source is not None else ""

    async def run(self) -> None:
        source = self.source
        if source is None:
            raise FatalCollectorError(self.self_check() or NO_INTERFACE)
        disconnect = None
        if self.capture is not None:
            await self._open_capture(self.capture)
            # passive watchers (discovery) registered with the appliance's PacketTaps, when it has one
            if self.ctx.packet_taps is not None:
                disconnect = self.ctx.packet_taps.connect(self.add_observer)
        table = self.table
        clock = self.ctx.clock
        taps = self.ctx.packet_taps
        starts = taps.flow_starts if taps is not None and taps.flow_starts.wanted else None
        if starts is not None:
            table.starts = []
            starts.captures += 1
        try:
            while True:
                with self.ctx.busy():
                    if self.capture is None:
                        # a file: read and decoded in a worker thread (disk I/O off the loop); the
                        # table is this task's alone offline (no passive watchers), so nothing races
                        batch = FILE_BATCH_PACKETS
                        count = await asyncio.to_thread(source.feed, table, batch)
                    else:
                        batch = LIVE_BATCH_PACKETS
                        count = source.feed(table, batch)  # the mapped ring: memory
                    if self.capture is not None and clock.monotonic() >= self._next_stats:
                        self._read_kernel_stats()
                    if source.finished:
                        table.flush()
                    elif count < batch and source.interface:
                        table.advance(clock.time_ns())
                    self._sync_metrics(count)
                    records, losses = table.drain()
                    if starts is not None and table.starts:
                        starts.offer(self.interface, table.starts)
                        table.starts = []
                await self._publish(records, losses, self._kernel_loss())
                if source.finished:
                    self.ctx.log.info(
                        "flow_source_finished",
                        packets=self.packets,
                        flows=table.flows_created,
                        skipped=sum(table.skipped),
                    )
                    return
                if count < batch:
                    await source.wait(IDLE_TICK_SECONDS)
                else:
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            await self._publish_at_stop()
            raise
        finally:
            if starts is not None:
                starts.captures -= 1
                table.starts = None
            if disconnect is not None:
                disconnect()
            source.close()

    async def _publish(
        self,
        records: list[FlowRecordData],
        losses: list[FlowLoss],
        kernel_loss: Sequence[events_pb2.Envelope] = (),
    ) -> None:
        envelopes = [to_envelope(r) for r in records]
        envelopes += [loss_envelope(loss) for loss in losses]
        envelopes += kernel_loss
        if envelopes:
            await self.ctx.publish_many(envelopes)

    async def _publish_at_stop(self) -> None:
        """End every flow (forced_end) and try, briefly, to publish them before stopping."""
        self.table.flush()
        self._sync_metrics(0)
        records, losses = self.table.drain()
        kernel_loss: list[events_pb2.Envelope] = []
        if self.capture is not None and self.capture.sock is not None:
            self._read_kernel_stats()
            kernel_loss = self._kernel_loss(final=True)
        if not records and not losses and not kernel_loss:
            return
        try:
            async with asyncio.timeout(STOP_PUBLISH_SECONDS):
                await self._publish(records, losses, kernel_loss)
        except TimeoutError:
            self.ctx.log.warning(
                "flow_records_lost_at_stop", records=len(records), timeout_seconds=STOP_PUBLISH_SECONDS
            )

    async def _open_capture(self, capture: LiveCapture) -> None:
        """Open the ring (StartupError names the interface); a filter libpcap rejects is fatal.

        Opening reads /sys/class/net/<if>/type and compiles the filter: done in a worker thread."""
        opening = asyncio.ensure_future(asyncio.to_thread(capture.open))
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            # the thread opens it anyway: close it when it is done
            opening.add_done_callback(_close_when_opened(capture))
            raise
        except bpf.BpfError as err:
            raise FatalCollectorError(f"capture on {capture.interface!r}: {err}") from err
        now = self.ctx.clock.monotonic()
        self._stats_ns = self.ctx.clock.time_ns()
        self._next_stats = now + KERNEL_STATS_SECONDS
        self._next_loss_report = now
        self.ctx.log.info(
            "flow_capture_started",
            interface=capture.interface,
            ring_mib=round(capture.ring_bytes / MIB, 2),
            block_kib=capture.block_bytes // 1024,
            filter=capture.filter_expression,
            promiscuous=capture.promiscuous,
        )

    def _read_kernel_stats(self) -> None:
        """PACKET_STATISTICS into the metrics and the pending loss window (once a second)."""
        capture = self.capture
        if capture is None:
            return
        clock = self.ctx.clock
        self._next_stats = clock.monotonic() + KERNEL_STATS_SECONDS
        stats = capture.kernel_stats()
        now_ns = clock.time_ns()
        if stats.packets:
            self.kernel_packets += stats.packets
            self._m_kernel_packets.inc(stats.packets)
        if stats.drops:
            self.kernel_drops += stats.drops
            self._m_kernel_drops.inc(stats.drops)
            if not self._drops_pending:
                self._drops_since_ns = self._stats_ns
            self._drops_pending += stats.drops
        self._stats_ns = now_ns

    def _kernel_loss(self, *, final: bool = False) -> list[events_pb2.Envelope]:
        """A LossReport for the pending kernel drops, at most one per KERNEL_LOSS_REPORT_SECONDS;
        logs once when drops start and once when they stop."""
        now = self.ctx.clock.monotonic()
        if not final and now < self._next_loss_report:
            return []
        if not self._drops_pending:
            if self._dropping and now >= self._next_loss_report:
                self._dropping = False
                self.ctx.log.info("flow_kernel_drops_stopped", interface=self.interface)
            return []
        drops, self._drops_pending = self._drops_pending, 0
        self._next_loss_report = now + KERNEL_LOSS_REPORT_SECONDS
        if not self._dropping:
            self._dropping = True
            self.ctx.log.warning(
                "flow_kernel_drops",
                interface=self.interface,
                drops=drops,
                ring_mib=self.config.ring_size_mib,
                hint="raise ring_size_mib, narrow the capture filter, or give the appliance more CPU",
            )
        return [kernel_loss_envelope(drops, self._drops_since_ns, self._stats_ns)]

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


def _close_when_opened(capture: LiveCapture) -> Callable[[asyncio.Future[None]], None]:
    """A done-callback for an open() whose caller was cancelled: close what it opened."""

    def close(opening: asyncio.Future[None]) -> None:
        if not opening.cancelled() and opening.exception() is None:
            capture.close()

    return close
