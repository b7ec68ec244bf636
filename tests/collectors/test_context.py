"""CollectorContext: stamping through the one shared stamper, counting, busy time."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from amoskys.collectors.clock import FakeClock
from amoskys.collectors.context import ApplianceInfo, describe_error
from amoskys.events import EnvelopeStamper
from amoskys.proto import events_pb2

from support import ListSink, make_context


def alert(rule: str) -> events_pb2.Envelope:
    return events_pb2.Envelope(alert=events_pb2.Alert(rule=rule))


async def test_two_collectors_share_one_gap_free_sequence(tmp_path: Path) -> None:
    stamper, sink = EnvelopeStamper("box"), ListSink()
    a = make_context("a", tmp_path, publish=sink, stamper=stamper)
    b = make_context("b", tmp_path, publish=sink, stamper=stamper)
    await a.publish(alert("1"))
    await b.publish(alert("2"))
    await a.publish_many([alert("3"), alert("4")])
    assert [e.source_seq for e in sink] == [1, 2, 3, 4]
    assert {e.boot_id for e in sink} == {stamper.boot_id} and {e.source for e in sink} == {"box"}
    assert len({e.event_id for e in sink}) == 4
    assert all(uuid.UUID(e.event_id).version == 7 for e in sink)
    assert (a.events, b.events) == (3, 1)
    assert a.metrics.registry.get_sample_value("amoskys_collector_events_total", {"collector": "a"}) == 3


async def test_ts_ns_comes_from_the_context_clock_unless_the_data_set_it(tmp_path: Path) -> None:
    sink = ListSink()
    ctx = make_context("c1", tmp_path, publish=sink)
    await ctx.publish(alert("now"))
    known = alert("observed")
    known.ts_ns = 123
    await ctx.publish(known)
    assert [e.ts_ns for e in sink] == [ctx.clock.time_ns(), 123]


async def test_an_envelope_without_body_is_refused(tmp_path: Path) -> None:
    sink = ListSink()
    ctx = make_context("c1", tmp_path, publish=sink)
    with pytest.raises(ValueError, match="collector 'c1' published an envelope without a body"):
        await ctx.publish(events_pb2.Envelope())
    assert sink == [] and ctx.events == 0


def test_count_error_remembers_the_last_one(tmp_path: Path) -> None:
    ctx = make_context("c1", tmp_path)
    ctx.count_error(OSError("no such device"))
    ctx.count_error("snmp target 'sw1': timeout")
    assert ctx.errors == 2 and ctx.last_error == "snmp target 'sw1': timeout"
    assert ctx.last_error_ns == ctx.clock.time_ns()
    assert ctx.metrics.registry.get_sample_value("amoskys_collector_errors_total", {"collector": "c1"}) == 2


def test_describe_error_unwraps_exception_groups() -> None:
    assert describe_error(ValueError("x")) == "ValueError: x"
    group = ExceptionGroup("g", [KeyError("k"), ExceptionGroup("h", [OSError("o")])])
    assert describe_error(group) == "KeyError: 'k' (and 1 more)"


def test_busy_measures_on_the_context_clock(tmp_path: Path) -> None:
    ctx = make_context("c1", tmp_path)
    with ctx.busy():
        ctx.clock.advance(1.5)  # type: ignore[attr-defined]
    assert ctx.busy_seconds == 1.5
    assert (
        ctx.metrics.registry.get_sample_value("amoskys_collector_busy_seconds_total", {"collector": "c1"})
        == 1.5
    )


def test_appliance_snapshot_has_uptime() -> None:
    clock = FakeClock()
    info = ApplianceInfo("box", "1.2", "host", "appliance", clock.time_ns(), pid=42)
    clock.advance(90)
    assert info.snapshot(clock) == {
        "name": "box",
        "version": "1.2",
        "hostname": "host",
        "mode": "appliance",
        "pid": 42,
        "started_ns": info.started_ns,
        "uptime_seconds": 90.0,
    }
