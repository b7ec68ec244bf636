"""The flow collector: honest about having nothing to capture, and offline (a capture file as its
source) it publishes the same flows as `amoskys flows read`, plus LossReports and metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from amoskys import __version__
from amoskys.collectors.clock import FakeClock
from amoskys.collectors.context import ApplianceInfo
from amoskys.collectors.flow.collector import NO_INTERFACE, FlowCollector
from amoskys.collectors.flow.config import FlowConfig
from amoskys.collectors.flow.pcap import PacketSink
from amoskys.collectors.flow.records import FORCED_END
from amoskys.collectors.flow.source import FileSource
from amoskys.config import CollectorsConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2
from amoskys.wiring import build_collectors

from flow_golden import CASES_DIR, case_config, case_input
from flow_traffic import packets, write
from support import ListSink, eventually, make_context

NS = 1_000_000_000


def make(
    tmp_path: Path, config: FlowConfig | None = None, source: Any = None
) -> tuple[FlowCollector, ListSink, Metrics]:
    sink = ListSink()
    ctx = make_context("flow", tmp_path, publish=sink)
    return FlowCollector(config or FlowConfig(), ctx, source=source), sink, ctx.metrics


def test_without_an_interface_it_says_it_has_nothing_to_read(tmp_path: Path) -> None:
    collector, _, _ = make(tmp_path)
    assert collector.self_check() == NO_INTERFACE
    assert "use `amoskys flows read FILE`" in NO_INTERFACE
    configured, _, _ = make(tmp_path, FlowConfig(interface="eth0"))
    configured.ctx.has_capability = lambda name: name != "CAP_NET_RAW"
    assert configured.self_check() == "needs CAP_NET_RAW"
    configured.ctx.has_capability = lambda name: True
    assert configured.self_check() is None
    offline, _, _ = make(tmp_path, source=FileSource(case_input("udp")))
    assert offline.self_check() is None and offline.mode == "offline"


async def test_the_supervisor_shows_it_disabled_with_the_reason_and_it_publishes_nothing(
    tmp_path: Path,
) -> None:
    sink = ListSink()
    sup = build_collectors(
        CollectorsConfig(),
        registry={"flow": FlowCollector},
        publish=sink,
        stamper=EnvelopeStamper("box"),
        metrics=Metrics(),
        data_dir=tmp_path,
        appliance=ApplianceInfo("box", __version__, "host", "appliance", 0),
        clock=FakeClock(),
    )
    task = asyncio.create_task(sup.run())
    try:
        await eventually(lambda: sup.status_of("flow").state == "disabled", within=2, what="flow disabled")
        status = sup.status_of("flow")
        assert (status.state, status.reason) == ("disabled", NO_INTERFACE)
    finally:
        async with asyncio.timeout(5):
            await sup.stop()
            await task
    assert sink == []


async def test_offline_it_publishes_what_flows_read_prints(tmp_path: Path) -> None:
    for case in ("tcp_fin", "icmp", "ipv6", "vlan", "interim"):
        collector, sink, _ = make(tmp_path, case_config(case), FileSource(case_input(case)))
        await collector.run()
        expected = [
            json.loads(line) for line in (CASES_DIR / case / "expected.jsonl").read_text().splitlines()
        ]
        records = [e for e in expected if "summary" not in e]
        assert [e.WhichOneof("body") for e in sink] == ["flow"] * len(records), case
        for envelope, rec in zip(sink, records, strict=True):
            flow = envelope.flow
            assert (flow.src_addr, flow.src_port, flow.dst_addr, flow.dst_port, flow.protocol) == (
                rec["src_addr"],
                rec["src_port"],
                rec["dst_addr"],
                rec["dst_port"],
                rec["protocol"],
            )
            assert (flow.forward.packets, flow.forward.octets, flow.forward.tcp_flags) == tuple(
                rec["forward"].values()
            )
            assert (flow.reverse.packets, flow.reverse.octets, flow.reverse.tcp_flags) == tuple(
                rec["reverse"].values()
            )
            assert (flow.community_id, flow.final, flow.vlan, flow.inner_vlan, flow.ip_version) == (
                rec["community_id"],
                rec["final"],
                rec["vlan"],
                rec["inner_vlan"],
                rec["ip_version"],
            )
            assert events_pb2.FlowEndReason.Name(flow.end_reason).lower() == rec["end_reason"]
            assert envelope.ts_ns == flow.last_ts_ns and envelope.source == "box"
        assert [e.source_seq for e in sink] == list(range(1, len(sink) + 1))


async def test_a_full_table_publishes_a_loss_report_and_metrics_count_everything(tmp_path: Path) -> None:
    collector, sink, metrics = make(tmp_path, case_config("table_full"), FileSource(case_input("table_full")))
    await collector.run()
    losses = [e.loss for e in sink if e.WhichOneof("body") == "loss"]
    assert len(losses) == 1
    loss = losses[0]
    assert (loss.what, loss.where, loss.reason, loss.count) == ("flows", "flow.table", "table_full", 3)
    assert loss.window_start_ns < loss.window_end_ns
    value = metrics.registry.get_sample_value
    assert value("amoskys_flow_packets_total") == 9
    assert value("amoskys_flow_table_evictions_total") == 3
    assert value("amoskys_flow_records_total", {"end_reason": "lack_of_resources"}) == 3
    assert value("amoskys_flow_records_total", {"end_reason": "forced_end"}) == 2
    assert value("amoskys_flow_table_flows") == 0


async def test_skipped_frames_show_in_metrics(tmp_path: Path) -> None:
    collector, _, metrics = make(tmp_path, source=FileSource(case_input("truncated_and_garbage")))
    await collector.run()
    value = metrics.registry.get_sample_value
    assert value("amoskys_flow_packets_total") == 11
    assert value("amoskys_flow_packets_skipped_total", {"reason": "not_ip"}) == 3
    assert value("amoskys_flow_packets_skipped_total", {"reason": "bad_ip_header"}) == 2
    assert value("amoskys_collector_events_total", {"collector": "flow"}) == 1


async def test_a_large_file_is_read_in_batches_that_let_the_loop_run(tmp_path: Path) -> None:
    path = tmp_path / "traffic.pcap"
    write(path, 40_000, seed=5, concurrent=200)
    collector, sink, _ = make(tmp_path, source=FileSource(path))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        await collector.run()
    finally:
        task.cancel()
    assert ticks >= 40_000 // 2048 and len(sink) > 500


class QueueSource:
    """A live-capture stand-in: frames arrive when the test puts them; wait() blocks until then."""

    interface = "veth-test"
    finished = False

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.ready = asyncio.Event()
        self.closed = False

    def feed(self, sink: PacketSink, max_packets: int) -> int:
        batch, self.frames = self.frames[:max_packets], self.frames[max_packets:]
        for ts, raw in batch:
            sink.packet(ts, raw, 0, len(raw))
        if not self.frames:
            self.ready.clear()
        return len(batch)

    async def wait(self, timeout_seconds: float) -> None:
        await self.ready.wait()

    def close(self) -> None:
        self.closed = True


async def test_stopping_a_live_source_ends_its_flows_and_publishes_them(tmp_path: Path) -> None:
    source = QueueSource()
    collector, sink, _ = make(tmp_path, source=source)
    task = asyncio.create_task(collector.run())
    source.frames = [(ts, raw) for ts, raw, _ in packets(50, seed=9, concurrent=5)]
    source.ready.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert sink == []  # nothing has ended yet
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert sink and {e.flow.end_reason for e in sink} <= {FORCED_END, 3}
    assert sum(e.flow.forward.packets + e.flow.reverse.packets for e in sink) == 50
    assert {e.flow.interface for e in sink} == {"veth-test"} and source.closed
