"""The capture's flow-start hook: each flow the table creates is handed over once, as it starts
(before its record), decoded to the same 5-tuple its record carries; nothing is noted while no
detector takes them; the queue is bounded and counts what it drops."""

from __future__ import annotations

from pathlib import Path

import pytest

from amoskys.collectors.clock import SystemClock
from amoskys.collectors.flow.collector import FlowCollector
from amoskys.collectors.flow.config import FlowConfig
from amoskys.collectors.flow.source import FileSource
from amoskys.collectors.flow_starts import FlowStarts
from amoskys.collectors.taps import PacketTaps
from amoskys.detections.builtin.finding import from_note

from support import ListSink, make_context

CASES = Path(__file__).resolve().parents[2] / "collectors" / "flow" / "testcases"


def _tuple(src: str, dst: str, sport: int, dport: int, proto: int) -> tuple[str, str, int, int, int]:
    return src, dst, sport, dport, proto


@pytest.mark.parametrize("case", ["tcp_port_reuse", "udp", "ipv6", "interim", "vlan"])
async def test_every_flow_of_a_capture_file_is_handed_over_once_as_its_record_names_it(
    tmp_path: Path, case: str
) -> None:
    taps = PacketTaps()
    taps.flow_starts.subscribe()
    sink = ListSink()
    ctx = make_context("flow", tmp_path, publish=sink, clock=SystemClock(), packet_taps=taps)
    collector = FlowCollector(FlowConfig(), ctx, source=FileSource(CASES / case / "input.pcap"))
    await collector.run()
    starts = [from_note(n, "box") for n in taps.flow_starts.take(100_000)]
    records = [e.flow for e in sink if e.HasField("flow")]
    # one start per flow: a flow's records (interim ones, then its final one) share its first record's
    # start time; a final record after an interim one is the same flow
    flows = [r for r in records if r.first_ts_ns and not _continues(r, records)]
    assert sorted((_tuple(s.src, s.dst, s.sport, s.dport, s.proto), s.ts_ns) for s in starts) == sorted(
        (_tuple(r.src_addr, r.dst_addr, r.src_port, r.dst_port, r.protocol), r.first_ts_ns) for r in flows
    )
    assert len(starts) == collector.table.flows_created and taps.flow_starts.captures == 0
    assert collector.table.starts is None  # not noted once the capture stopped


def _continues(record, records) -> bool:  # type: ignore[no-untyped-def]
    """A record that follows an interim record of its flow (not a flow's first record)."""
    key = (record.community_id, record.vlan)
    earlier = [r for r in records if (r.community_id, r.vlan) == key and r.last_ts_ns < record.first_ts_ns]
    return any(not r.final for r in earlier)


async def test_no_detector_taking_flow_starts_notes_nothing(tmp_path: Path) -> None:
    taps = PacketTaps()
    ctx = make_context("flow", tmp_path, clock=SystemClock(), packet_taps=taps)
    collector = FlowCollector(FlowConfig(), ctx, source=FileSource(CASES / "udp" / "input.pcap"))
    await collector.run()
    assert collector.table.flows_created > 0 and len(taps.flow_starts) == 0 and taps.flow_starts.offered == 0


def test_the_queue_is_bounded_and_counts_what_it_drops() -> None:
    starts = FlowStarts(maxlen=3)
    note = (b"\x0a\x00\x00\x01\x0a\x00\x00\x02\x00\x01\x00\x02", 6, 0, 1)
    starts.offer("eth0", [note] * 2)  # no consumer: not even counted
    assert len(starts) == 0 and starts.offered == 0
    starts.subscribe()
    starts.offer("eth0", [note] * 2)
    starts.offer("eth0", [note] * 2)
    assert len(starts) == 3 and starts.dropped == 1 and starts.offered == 4
    [first, *_] = starts.take(10)
    s = from_note(first, "box")
    assert (s.src, s.dst, s.sport, s.dport, s.proto, s.interface) == ("10.0.0.1", "10.0.0.2", 1, 2, 6, "eth0")
    assert len(starts) == 0
    starts.unsubscribe()
    assert not starts.wanted
