"""The flow table's rules: timeouts, interim deltas, TCP ends, the bound, observers, conservation."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amoskys.collectors.flow import parse as P
from amoskys.collectors.flow.records import (
    ACTIVE_TIMEOUT,
    END_OF_FLOW,
    FORCED_END,
    IDLE_TIMEOUT,
    LACK_OF_RESOURCES,
    FlowLoss,
    FlowRecordData,
)
from amoskys.collectors.flow.table import FlowTable

NS = 1_000_000_000
T0 = 1_767_225_600 * NS
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
H = [bytes((10, 0, 0, i)) for i in range(1, 6)]
MAC = b"\x02\x00\x00\x00\x00\x0b\x02\x00\x00\x00\x00\x0a"


def frame(
    src: int, dst: int, sport: int, dport: int, *, proto: int = 6, flags: int = 0, size: int = 0
) -> bytes:
    """An Ethernet + IPv4 frame from host H[src] to H[dst] (a payload of ``size`` bytes)."""
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, flags, 1000, 0, 0)
    elif proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8 + size, 0)
    else:  # ICMP: sport = type, dport = code
        l4 = struct.pack("!BBHHH", sport, dport, 0, 1, 1)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4) + size, 1, 0, 64, proto, 0, H[src], H[dst])
    return MAC + b"\x08\x00" + ip + l4 + bytes(size)


def feed(table: FlowTable, *packets: tuple[float, bytes]) -> list[FlowRecordData]:
    for seconds, raw in packets:
        table.packet(T0 + round(seconds * NS), raw, 0, len(raw))
    records = list(table.records)
    table.records.clear()  # losses stay for the test to take
    return records


def end_all(table: FlowTable) -> list[FlowRecordData]:
    table.flush()
    return feed(table)


def summary(r: FlowRecordData) -> tuple[object, ...]:
    return (r.src_port, r.dst_port, r.fwd_packets, r.rev_packets, r.end_reason, r.final)


def test_both_directions_make_one_flow_and_forward_is_the_first_packet_s() -> None:
    table = FlowTable()
    feed(
        table,
        (0.0, frame(1, 0, 80, 40000, flags=SYN | ACK)),  # the capture starts mid-handshake
        (0.1, frame(0, 1, 40000, 80, flags=ACK, size=10)),
        (0.2, frame(1, 0, 80, 40000, flags=ACK | PSH, size=100)),
    )
    (r,) = end_all(table)
    assert (r.src_addr, r.src_port, r.dst_addr, r.dst_port) == ("10.0.0.2", 80, "10.0.0.1", 40000)
    assert (r.fwd_packets, r.fwd_octets, r.fwd_flags) == (2, 40 + 140, SYN | ACK | PSH)
    assert (r.rev_packets, r.rev_octets, r.rev_flags) == (1, 50, ACK)
    assert r.src_mac == MAC[6:] and r.dst_mac == MAC[:6]
    assert (r.first_ts_ns, r.last_ts_ns) == (T0, T0 + NS // 5)


def test_interim_records_are_deltas_that_add_up_and_the_last_is_final() -> None:
    table = FlowTable(active_seconds=60)
    packets = [(10.0 * i, frame(0, 1, 5000, 53, proto=17, size=i)) for i in range(20)]
    records = feed(table, *packets) + end_all(table)
    assert [(r.end_reason, r.final, r.fwd_packets) for r in records] == [
        (ACTIVE_TIMEOUT, False, 6),
        (ACTIVE_TIMEOUT, False, 6),
        (ACTIVE_TIMEOUT, False, 6),
        (FORCED_END, True, 2),
    ]
    assert sum(r.fwd_octets for r in records) == sum(28 + i for i in range(20))
    assert [(r.first_ts_ns - T0) // NS for r in records] == [0, 60, 120, 180]
    assert [(r.last_ts_ns - T0) // NS for r in records] == [50, 110, 170, 190]
    assert len({r.community_id for r in records}) == 1


def test_a_quiet_long_flow_sends_its_interim_record_on_time_without_a_packet() -> None:
    table = FlowTable(active_seconds=60, idle_seconds=120)
    feed(table, *((float(i), frame(0, 1, 7, 8, proto=17)) for i in range(30)))
    table.advance(T0 + 61 * NS)  # the live capture's idle tick
    (interim,) = table.drain()[0]
    assert (interim.end_reason, interim.final, interim.fwd_packets) == (ACTIVE_TIMEOUT, False, 30)
    table.advance(T0 + 150 * NS)  # idle since 29 s: ends at 149 s, with nothing new to count
    (final,) = table.drain()[0]
    assert (final.end_reason, final.final, final.fwd_packets) == (IDLE_TIMEOUT, True, 0)
    assert final.first_ts_ns == final.last_ts_ns == T0 + 29 * NS


def test_idle_timeout_is_exact_to_the_nanosecond_of_packet_time() -> None:
    table = FlowTable(idle_seconds=60)
    records = feed(
        table,
        (0.0, frame(0, 1, 1, 2, proto=17)),
        (59.999999999, frame(1, 0, 2, 1, proto=17)),  # 1 ns before the deadline: same flow
        (119.999999999, frame(0, 1, 1, 2, proto=17)),  # exactly idle since the last: a new flow
    )
    assert [summary(r) for r in records] == [(1, 2, 1, 1, IDLE_TIMEOUT, True)]
    assert [summary(r) for r in end_all(table)] == [(1, 2, 1, 0, FORCED_END, True)]


def test_tcp_uses_its_own_idle_timeout() -> None:
    table = FlowTable(tcp_idle_seconds=300, idle_seconds=60, active_seconds=1000)
    assert feed(table, (0, frame(0, 1, 1, 2, flags=ACK)), (200, frame(0, 1, 1, 2, flags=ACK))) == []
    assert [r.fwd_packets for r in end_all(table)] == [2]


def test_rst_ends_the_flow_after_the_linger_and_late_packets_still_count() -> None:
    table = FlowTable(linger_seconds=5)
    records = feed(
        table,
        (0.0, frame(0, 1, 40000, 443, flags=SYN)),
        (0.1, frame(1, 0, 443, 40000, flags=RST | ACK)),
        (3.0, frame(0, 1, 40000, 443, flags=ACK)),  # inside the linger: same flow
        (9.0, frame(0, 1, 40000, 443, flags=ACK)),  # after it: the first flow ended at 5.1 s
    )
    assert [summary(r) for r in records] == [(40000, 443, 2, 1, END_OF_FLOW, True)]
    assert records[0].last_ts_ns == T0 + 3 * NS


def test_fin_from_one_side_does_not_end_the_flow_fins_from_both_do() -> None:
    table = FlowTable(linger_seconds=5, tcp_idle_seconds=300, active_seconds=1000)
    assert feed(table, (0, frame(0, 1, 1, 2, flags=FIN | ACK)), (30, frame(0, 1, 1, 2, flags=ACK))) == []
    records = feed(table, (31, frame(1, 0, 2, 1, flags=FIN | ACK)), (40, frame(3, 4, 9, 9, proto=17)))
    assert [summary(r) for r in records] == [(1, 2, 2, 1, END_OF_FLOW, True)]


def test_a_syn_after_the_close_starts_a_new_flow_at_once() -> None:
    table = FlowTable(linger_seconds=5)
    records = feed(
        table,
        (0.0, frame(0, 1, 1, 2, flags=FIN | ACK)),
        (0.1, frame(1, 0, 2, 1, flags=FIN | ACK)),
        (0.2, frame(0, 1, 1, 2, flags=SYN)),
    )
    assert [summary(r) for r in records] == [(1, 2, 1, 1, END_OF_FLOW, True)]
    (new,) = end_all(table)
    assert (new.fwd_packets, new.fwd_flags, new.first_ts_ns) == (1, SYN, T0 + NS // 5)


def test_a_vlan_id_from_capture_metadata_keys_the_flow() -> None:
    """The live capture hands the VLAN the kernel stripped; the same 5-tuple on two VLANs is two flows."""
    table = FlowTable()
    raw = frame(0, 1, 1, 2, proto=17)
    table.packet(T0, raw, 0, len(raw), P.parse_ethernet, 10)
    table.packet(T0 + 1, raw, 0, len(raw), P.parse_ethernet, 20)
    table.packet(T0 + 2, raw, 0, len(raw), P.parse_ethernet, 10)
    assert [(r.vlan, r.fwd_packets) for r in end_all(table)] == [(10, 2), (20, 1)]


def test_icmp_echo_pairs_and_errors_stand_alone() -> None:
    table = FlowTable()
    feed(
        table,
        (0.0, frame(0, 1, 8, 0, proto=1)),
        (0.1, frame(1, 0, 0, 0, proto=1)),
        (0.2, frame(1, 0, 3, 3, proto=1)),  # port unreachable back to H0: one-way
        (0.3, frame(0, 1, 3, 3, proto=1)),  # and one the other way: another one-way flow
    )
    assert [summary(r) for r in end_all(table)] == [
        (8, 0, 1, 1, FORCED_END, True),
        (3, 3, 1, 0, FORCED_END, True),
        (3, 3, 1, 0, FORCED_END, True),
    ]


def test_a_host_talking_to_its_own_port_is_one_direction() -> None:
    table = FlowTable()
    feed(table, (0, frame(0, 0, 7, 7, proto=17)), (1, frame(0, 0, 7, 7, proto=17)))
    assert [summary(r) for r in end_all(table)] == [(7, 7, 2, 0, FORCED_END, True)]


def test_a_full_table_ends_the_flow_due_soonest_and_reports_the_loss() -> None:
    table = FlowTable(max_flows=2)
    records = feed(
        table,
        (0, frame(0, 1, 1, 53, proto=17)),
        (1, frame(0, 1, 2, 53, proto=17)),
        (2, frame(0, 1, 3, 53, proto=17)),  # evicts the flow from port 1
        (3, frame(0, 1, 4, 53, proto=17)),  # ... and the one from port 2
    )
    assert [(r.src_port, r.end_reason) for r in records] == [(1, LACK_OF_RESOURCES), (2, LACK_OF_RESOURCES)]
    assert len(table) == 2 and table.evicted == 2 and table.losses == []
    feed(table, (12.5, frame(0, 1, 4, 53, proto=17)))  # 10 s of packet time after the first eviction
    assert table.drain()[1] == [FlowLoss(2, T0 + 2 * NS, T0 + 3 * NS)]
    feed(table, (13, frame(0, 1, 5, 53, proto=17)))
    table.flush()
    assert table.drain()[1] == [FlowLoss(1, T0 + 13 * NS, T0 + 13 * NS)]


def test_later_fragments_join_the_flow_of_their_first_and_orphans_are_counted() -> None:
    base = frame(0, 1, 9000, 9001, proto=17, size=100)
    first = bytearray(base)
    first[20:22] = struct.pack("!H", 0x2000)  # more fragments, offset 0
    later = bytearray(base[:34] + bytes(40))
    later[16:18] = struct.pack("!H", 60)  # total length
    later[20:22] = struct.pack("!H", 16)  # offset 128 bytes, last fragment
    orphan = bytearray(later)
    orphan[18:20] = b"\x99\x99"  # another IP id
    table = FlowTable()
    feed(table, (0, bytes(first)), (0.1, bytes(later)), (0.2, bytes(orphan)))
    records = end_all(table)
    assert [(r.src_port, r.dst_port, r.fwd_packets, r.fwd_octets) for r in records] == [
        (9000, 9001, 2, 128 + 60),
        (0, 0, 1, 60),
    ]
    assert table.fragments_unmatched == 1


def test_out_of_order_timestamps_keep_first_before_last() -> None:
    table = FlowTable()
    feed(
        table,
        (5, frame(0, 1, 1, 2, proto=17)),
        (3, frame(0, 1, 1, 2, proto=17)),
        (7, frame(0, 1, 1, 2, proto=17)),
    )
    (r,) = end_all(table)
    assert (r.first_ts_ns, r.last_ts_ns, r.fwd_packets) == (T0 + 3 * NS, T0 + 7 * NS, 3)


def test_skipped_frames_are_counted_by_reason() -> None:
    table = FlowTable()
    arp = MAC + b"\x08\x06" + bytes(28)
    feed(table, (0, arp), (0, b"\x00" * 5), (0, frame(0, 1, 1, 2)[:30]))
    assert dict(zip(P.REASONS, table.skipped, strict=True)) == {
        "truncated_link": 1,
        "not_ip": 1,
        "truncated_ip": 1,
        "bad_ip_header": 0,
        "truncated_transport": 0,
        "unsupported_link_type": 0,
    }


class Watcher:
    """A passive observer as discovery will be: ARP frames and DHCP packets."""

    ethertypes = frozenset({0x0806})
    udp_ports = frozenset({67, 68})

    def __init__(self) -> None:
        self.seen: list[tuple[int, bytes, P.Packet | None]] = []

    def observe(self, ts_ns: int, frame: bytes, packet: P.Packet | None) -> None:
        self.seen.append((ts_ns, frame, packet))


def test_observers_get_the_frames_they_watch_and_flows_still_count_them() -> None:
    table = FlowTable()
    watcher = Watcher()
    table.add_observer(watcher)
    arp = MAC + b"\x08\x06" + bytes(28)
    lldp = MAC + b"\x88\xcc" + bytes(28)
    dhcp = frame(0, 1, 68, 67, proto=17, size=300)
    dns = frame(0, 1, 5353, 53, proto=17, size=30)
    feed(table, (1, arp), (2, lldp), (3, dhcp), (4, dns))
    assert [(ts - T0) // NS for ts, _, _ in watcher.seen] == [1, 3]
    assert watcher.seen[0][1:] == (arp, None)
    assert watcher.seen[1][1] == dhcp and watcher.seen[1][2][P.PROTO] == 17  # type: ignore[index]
    assert sorted(r.dst_port for r in end_all(table)) == [53, 67]


def test_the_table_reads_frames_from_a_shared_buffer_by_offset() -> None:
    """A capture ring hands offsets into one large block; nothing may keep a view into it."""
    one, two = frame(0, 1, 1, 2, proto=17), frame(1, 0, 2, 1, proto=17)
    block = bytearray(b"\xaa" * 3 + one + b"\xbb" * 5 + two)
    view = memoryview(block)
    table = FlowTable()
    table.packet(T0, view, 3, 3 + len(one))
    table.packet(T0 + 1, view, 8 + len(one), len(block))
    block[:] = bytes(len(block))  # the ring reuses the block
    (r,) = end_all(table)
    assert (r.src_addr, r.fwd_packets, r.rev_packets, r.src_mac) == ("10.0.0.1", 1, 1, MAC[6:])


# ---------------------------------------------------------------- conservation
packets = st.lists(
    st.tuples(
        st.integers(0, 200_000),  # ms after the previous packet
        st.integers(0, 2),
        st.integers(0, 2),
        st.sampled_from([1, 2, 80]),
        st.sampled_from([6, 17, 1]),
        st.sampled_from([0, SYN, ACK, FIN | ACK, RST, SYN | ACK, PSH | ACK]),
        st.integers(0, 300),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets, st.integers(1, 4), st.sampled_from([1.0, 30.0, 60.0]))
def test_every_packet_and_octet_lands_in_exactly_one_record(
    pkts: list[tuple[int, int, int, int, int, int, int]], max_flows: int, active: float
) -> None:
    table = FlowTable(max_flows=max_flows, active_seconds=active, idle_seconds=60, linger_seconds=5)
    ts = T0
    sent_packets = sent_octets = 0
    records: list[FlowRecordData] = []
    for gap_ms, src, dst, port, proto, flags, size in pkts:
        ts += gap_ms * 1_000_000
        raw = frame(
            src, dst, port, 80 if port != 80 else 1, proto=proto, flags=flags if proto == 6 else 0, size=size
        )
        table.packet(ts, raw, 0, len(raw))
        assert len(table) <= max_flows
        sent_packets += 1
        sent_octets += struct.unpack_from("!H", raw, 16)[0]
        records += table.drain()[0]
    table.flush()
    records += table.drain()[0]
    assert sum(r.fwd_packets + r.rev_packets for r in records) == sent_packets
    assert sum(r.fwd_octets + r.rev_octets for r in records) == sent_octets
    for r in records:
        assert r.first_ts_ns <= r.last_ts_ns
        assert r.final == (r.end_reason != ACTIVE_TIMEOUT)
    assert len(table) == 0
