"""The pure parts: multi-column GETBULK walking, and assembling SnmpSamples with rates."""

from __future__ import annotations

import pytest

from amoskys.collectors.snmp.rows import PollData, assemble, speed_bps
from amoskys.collectors.snmp.walk import END, ColumnWalk

A, B = (1, 3, 9, 1), (1, 3, 9, 2)


def test_walk_reads_rows_and_continues_each_column_from_its_last_oid() -> None:
    walk = ColumnWalk({"a": A, "b": B})
    asked = walk.request()
    walk.feed(asked, 100, [((*A, 1), 10), ((*B, 1), 20), ((*A, 2), 11), ((*B, 2), 21)])
    assert walk.request() == [("a", (*A, 2)), ("b", (*B, 2))]
    # the next response ends column a (it moved on to b) and is cut after a partial row
    walk.feed(walk.request(), 200, [((*B, 1), 20), ((*B, 3), 22), ((*B, 2), 21)])
    assert walk.request() == [("b", (*B, 3))]
    walk.feed(walk.request(), 300, [((1, 3, 9, 3, 1), 0)])
    assert walk.done
    assert walk.cells == {
        "a": {(1,): (10, 100), (2,): (11, 100)},
        "b": {(1,): (20, 100), (2,): (21, 100), (3,): (22, 200)},
    }
    assert walk.requests == 3 and walk.varbinds == 8


def test_walk_stops_at_end_of_mib_view_and_on_a_non_increasing_agent() -> None:
    walk = ColumnWalk({"a": A, "b": B})
    walk.feed(walk.request(), 1, [((*A, 5), 1), ((*B, 5), END)])
    assert walk.request() == [("a", (*A, 5))]
    walk.feed(walk.request(), 2, [((*A, 5), 1)])  # the same OID again: a broken agent
    assert walk.done


def test_walk_ends_on_an_empty_response() -> None:
    walk = ColumnWalk({"a": A})
    walk.feed(walk.request(), 1, [])
    assert walk.done


def test_speed_uses_if_high_speed_only_when_if_speed_saturates() -> None:
    assert speed_bps(100_000_000, 100) == 100_000_000
    assert speed_bps(4_294_967_295, 10_000) == 10_000_000_000
    assert speed_bps(None, 40_000) == 40_000_000_000
    assert speed_bps(None, None) == 0


def poll(ticks: int, at: float, in_hc: int | None, in32: int, *, discontinuity: int = 0) -> PollData:
    interfaces = {
        "descr": {(1,): (b"eth0", ticks)},
        "name": {(1,): (b"e0", ticks)},
        "speed": {(1,): (1_000_000_000, ticks)},
        "in_octets": {(1,): (in32, ticks)},
        "out_octets": {(1,): (in32, ticks)},
        "discontinuity_ticks": {(1,): (discontinuity, ticks)},
    }
    if in_hc is not None:
        interfaces["hc_in_octets"] = {(1,): (in_hc, ticks)}
        interfaces["hc_out_octets"] = {(1,): (in_hc, ticks)}
    return PollData(system={"name": b"sw"}, uptime_ticks=ticks, monotonic=at, interfaces=interfaces)


def test_first_sample_has_no_rate_and_the_second_has_one_from_64bit_counters() -> None:
    first = assemble("sw", "h:161", poll(10_000, 100.0, 1_000, 7), None, poll_seconds=0.1)
    iface = first.sample.interfaces[0]
    assert iface.hc_counters and iface.in_octets == 1_000 and not iface.HasField("in_bps")
    second = assemble("sw", "h:161", poll(16_000, 160.0, 61_000, 9), first.state, poll_seconds=0.1)
    iface = second.sample.interfaces[0]
    assert iface.in_bps == pytest.approx(8_000.0) and iface.out_bps == pytest.approx(8_000.0)
    assert second.sample.rate_interval_seconds == pytest.approx(60.0)
    assert not iface.counters_reset and not second.sample.agent_restarted


def test_32bit_counters_are_used_when_there_is_no_hc_twin() -> None:
    first = assemble("sw", "h", poll(0, 0.0, None, 2**32 - 100), None, poll_seconds=0.1)
    second = assemble("sw", "h", poll(1_000, 10.0, None, 900), first.state, poll_seconds=0.1)
    iface = second.sample.interfaces[0]
    assert not iface.hc_counters and iface.in_bps == pytest.approx(1_000 * 8 / 10)


def test_agent_restart_marks_every_interface_reset_without_rates() -> None:
    first = assemble("sw", "h", poll(500_000, 0.0, 9_000_000, 5), None, poll_seconds=0.1)
    second = assemble("sw", "h", poll(2_000, 60.0, 1_000, 5), first.state, poll_seconds=0.1)
    assert second.sample.agent_restarted and second.counter_resets == 1
    iface = second.sample.interfaces[0]
    assert iface.counters_reset and not iface.HasField("in_bps") and not iface.HasField("out_bps")
    assert second.sample.rate_interval_seconds == 0


def test_changed_discontinuity_time_marks_that_interface_reset() -> None:
    first = assemble("sw", "h", poll(0, 0.0, 100, 5, discontinuity=0), None, poll_seconds=0.1)
    second = assemble(
        "sw", "h", poll(6_000, 60.0, 200, 5, discontinuity=3_000), first.state, poll_seconds=0.1
    )
    iface = second.sample.interfaces[0]
    assert iface.counters_reset and not iface.HasField("in_bps") and not second.sample.agent_restarted
