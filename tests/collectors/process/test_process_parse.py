"""parse.py: proc connector messages built byte by byte, real kernel layouts, and fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amoskys.collectors.process import parse


def message(what: int, payload: bytes, *, cpu: int = 1, seq: int = 7, ts: int = 123, ack: int = 0) -> bytes:
    event = struct.pack("=IIQ", what, cpu, ts) + payload
    event += b"\0" * (40 - len(event))  # the kernel sends the whole union: 40 bytes of proc_event
    cn = struct.pack("=IIIIHH", parse.CN_IDX_PROC, parse.CN_VAL_PROC, seq, ack, len(event), 0) + event
    return struct.pack("=IHHII", 16 + len(cn), parse.NLMSG_DONE, 0, 0, 0) + cn


def test_exec_fork_exit_and_ack_decode() -> None:
    assert parse.parse_datagram(message(parse.PROC_EVENT_EXEC, struct.pack("=ii", 42, 42))) == [
        parse.Exec(cpu=1, seq=7, ts_ns=123, pid=42, tgid=42)
    ]
    fork = struct.pack("=iiii", 10, 10, 43, 43)
    assert parse.parse_datagram(message(parse.PROC_EVENT_FORK, fork)) == [parse.Fork(1, 7, 123, 10, 43, 43)]
    exit_ = struct.pack("=iiIIii", 43, 43, 3 << 8, 17, 10, 10)
    assert parse.parse_datagram(message(parse.PROC_EVENT_EXIT, exit_)) == [
        parse.Exit(1, 7, 123, 43, 43, 0x300, 10)
    ]
    ack = message(parse.PROC_EVENT_NONE, struct.pack("=I", 1), seq=0, ack=5)
    assert parse.parse_datagram(ack) == [parse.Ack(cpu=1, seq=0, ack=5, err=1)]
    comm = message(0x200, struct.pack("=ii", 42, 42) + b"bash\0")
    assert parse.parse_datagram(comm) == [parse.Other(1, 7, 123, 0x200)]


def test_a_datagram_seen_on_this_kernel_decodes() -> None:
    # an exit captured from Linux 6.18 (pid 0x6684 exits 0, parent 0x499e)
    raw = bytes.fromhex(
        "4c000000030000000000000000000000010000000100000007000000000000002800000000000080"
        "010000005ca3f4e0ab02000084660000846600000000000011000000"
        "9e4900009e4900000000000000000000"
    )
    [record] = parse.parse_datagram(raw)
    assert record == parse.Exit(
        cpu=1, seq=7, ts_ns=0x2ABE0F4A35C, pid=0x6684, tgid=0x6684, status=0, parent_tgid=0x499E
    )


def test_several_messages_and_other_connectors() -> None:
    other = bytearray(message(parse.PROC_EVENT_EXEC, struct.pack("=ii", 1, 1)))
    struct.pack_into("=I", other, 16, 7)  # another connector index: skipped
    data = message(parse.PROC_EVENT_EXEC, struct.pack("=ii", 5, 5)) + bytes(other)
    assert [type(r) for r in parse.parse_datagram(data)] == [parse.Exec]
    error = struct.pack("=IHHII", 20, parse.NLMSG_ERROR, 0, 0, 0) + struct.pack("=i", -105)
    assert parse.parse_datagram(error) == [parse.NetlinkError(105)]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(0, (0, None)), (3 << 8, (3, None)), (255 << 8, (255, None)), (9, (None, 9)), (0x80 | 11, (None, 11))],
)
def test_wait_status_is_an_exit_code_or_a_signal(
    status: int, expected: tuple[int | None, int | None]
) -> None:
    assert parse.decode_status(status) == expected


def test_truncated_messages_are_parse_errors() -> None:
    good = message(parse.PROC_EVENT_EXIT, struct.pack("=iiIIii", 1, 1, 0, 17, 0, 0))
    short = bytearray(good[:60])
    struct.pack_into("=I", short, 0, 60)  # consistent netlink length, event cut short
    struct.pack_into("=H", short, 32, 24)
    with pytest.raises(parse.ParseError, match="truncated"):
        parse.parse_datagram(bytes(short))
    with pytest.raises(parse.ParseError, match="claims"):
        parse.parse_datagram(good[:40])


def test_subscribe_message_layout() -> None:
    data = parse.subscribe_message(parse.PROC_CN_MCAST_LISTEN, ack=99)
    assert len(data) == 40
    assert struct.unpack_from("=IHHII", data) == (40, parse.NLMSG_DONE, 0, 0, 0)
    assert struct.unpack_from("=IIIIHH", data, 16) == (1, 1, 0, 99, 4, 0)
    assert struct.unpack_from("=I", data, 36) == (parse.PROC_CN_MCAST_LISTEN,)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        parse.parse_datagram(data)
    except parse.ParseError:
        pass


@given(st.lists(st.tuples(st.sampled_from([1, 2, 0x80000000, 0, 0x200]), st.binary(min_size=0, max_size=30))))
def test_well_framed_messages_with_random_payloads_never_crash(parts: list[tuple[int, bytes]]) -> None:
    data = b"".join(message(what, payload[:24]) for what, payload in parts)
    records = parse.parse_datagram(data)
    assert len(records) == len(parts)
