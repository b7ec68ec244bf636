"""pcap and pcapng readers: formats, byte orders, timestamp resolutions, cut and corrupt files."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from amoskys.collectors.flow import parse as P
from amoskys.collectors.flow.pcap import CaptureFileError, open_capture, open_stream

from flow_traffic import pcap_header, pcap_record

NS = 1_000_000_000
T = 1_767_225_600


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[int, bytes, Any]] = []

    def packet(self, ts: int, buf: Any, off: int, end: int, parse: P.ParseFn = P.parse_ethernet) -> None:
        self.got.append((ts, bytes(buf[off:end]), parse))


def read_all(data: bytes) -> tuple[list[tuple[int, bytes, Any]], Any]:
    reader = open_stream(io.BytesIO(data), "test")
    sink = Sink()
    while reader.feed(sink, 3):
        pass
    return sink.got, reader


def block(order: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack(order + "II", btype, 12 + len(body)) + body + struct.pack(order + "I", 12 + len(body))


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, linktype: int, *options: tuple[int, bytes]) -> bytes:
    opts = b"".join(struct.pack(order + "HH", c, len(v)) + v + bytes(-len(v) % 4) for c, v in options)
    if options:
        opts += bytes(4)
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, 65535) + opts)


def epb(order: str, iface: int, ts: int, data: bytes, orig: int | None = None) -> bytes:
    head = struct.pack(order + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), orig or len(data))
    return block(order, 6, head + data)


def test_pcap_in_microseconds_little_endian() -> None:
    data = pcap_header(65535) + pcap_record(T * NS + 123_456_000, b"abc", 60) + pcap_record(T * NS, b"", 0)
    got, reader = read_all(data)
    assert [(ts, raw) for ts, raw, _ in got] == [(T * NS + 123_456_000, b"abc"), (T * NS, b"")]
    assert got[0][2] is P.parse_ethernet and reader.format == "pcap" and reader.linktypes == [1]
    assert reader.packets == 2 and not reader.truncated


def test_pcap_in_nanoseconds_big_endian_with_another_link_type() -> None:
    head = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 101)
    rec = struct.pack(">IIII", T, 987_654_321, 4, 4) + b"\x45\x00\x00\x14"
    got, reader = read_all(head + rec)
    assert [(ts, raw) for ts, raw, _ in got] == [(T * NS + 987_654_321, b"\x45\x00\x00\x14")]
    assert got[0][2] is P.parse_raw and reader.linktypes == [101]


def test_records_spanning_chunk_boundaries_are_read_whole(tmp_path: Path) -> None:
    rng = random.Random(3)
    frames = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(2000)]  # ~3 MB, several chunks
    path = tmp_path / "big.pcap"
    path.write_bytes(
        pcap_header(65535) + b"".join(pcap_record(T * NS + i * 1000, f, len(f)) for i, f in enumerate(frames))
    )
    with open_capture(path) as reader:
        assert [raw for _, raw in reader.frames()] == frames
        assert reader.packets == 2000 and reader.feed(Sink()) == 0


def test_feed_hands_at_most_the_batch_asked_for() -> None:
    data = pcap_header(65535) + b"".join(pcap_record(T * NS, b"x", 1) for _ in range(10))
    reader = open_stream(io.BytesIO(data), "test")
    sink = Sink()
    assert [reader.feed(sink, 4) for _ in range(4)] == [4, 4, 2, 0]


def test_a_file_cut_inside_a_record_is_read_up_to_there() -> None:
    data = pcap_header(65535) + pcap_record(T * NS, b"whole", 5) + pcap_record(T * NS, b"cut short", 9)[:-3]
    got, reader = read_all(data)
    assert [raw for _, raw, _ in got] == [b"whole"] and reader.truncated


def test_a_record_longer_than_any_snap_length_is_an_error_naming_the_offset() -> None:
    data = (
        pcap_header(65535)
        + pcap_record(T * NS, b"ok", 2)
        + struct.pack("<IIII", T, 0, 10_000_000, 10_000_000)
    )
    with pytest.raises(CaptureFileError, match=r"claims 10000000 captured bytes \(at byte 42\)") as info:
        read_all(data)
    assert info.value.offset == 42 and info.value.path == "test"


def test_a_file_that_is_no_capture_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, world")
    with pytest.raises(CaptureFileError, match=r"not a pcap or pcapng file \(starts with 68656c6c"):
        open_capture(path)
    with pytest.raises(CaptureFileError, match="cannot open"):
        open_capture(tmp_path / "missing.pcap")


def test_pcapng_sections_interfaces_resolutions_and_block_kinds() -> None:
    ts_ns = T * NS + 5
    data = b"".join(
        [
            shb("<"),
            idb("<", 1),  # interface 0: Ethernet, microseconds
            idb("<", 101, (9, b"\x09"), (14, struct.pack("<q", 100))),  # 1: raw IP, ns, +100 s
            block("<", 4, b"\x00" * 8),  # a name resolution block: skipped
            epb("<", 0, T * 1_000_000 + 7, b"eth-frame"),
            epb("<", 1, ts_ns, b"ip-packet", 1500),
            block("<", 3, struct.pack("<I", 4) + b"spb!"),  # simple packet block: interface 0
            block("<", 0x40000BAD, b"custom"),
            shb(">"),  # a new section, big-endian: interfaces start over
            idb(">", 1, (9, bytes([0x80 | 10]))),  # 2^-10 s units
            epb(">", 0, T * 1024 + 512, b"be-frame"),
            block(">", 2, struct.pack(">HHIIII", 0, 0, 0, T * 1_000_000 & 0xFFFFFFFF, 3, 3) + b"opb"),
        ]
    )
    got, reader = read_all(data)
    assert [(ts, raw) for ts, raw, _ in got] == [
        (T * NS + 7_000, b"eth-frame"),
        (ts_ns + 100 * NS, b"ip-packet"),
        (ts_ns + 100 * NS, b"spb!"),  # no time of its own: the previous packet's
        (T * NS + NS // 2, b"be-frame"),
        ((T * 1_000_000 & 0xFFFFFFFF) * NS // 1024, b"opb"),  # interface 0 of this section: 2^-10 s
    ]
    assert [p for _, _, p in got] == [
        P.parse_ethernet,
        P.parse_raw,
        P.parse_ethernet,
        P.parse_ethernet,
        P.parse_ethernet,
    ]
    assert reader.format == "pcapng" and reader.linktypes == [1, 101, 1]


def test_pcapng_errors_name_the_problem_and_the_offset() -> None:
    bad_length = shb("<") + struct.pack("<II", 6, 30) + bytes(22)
    with pytest.raises(CaptureFileError, match=r"impossible length 30 \(at byte 28\)"):
        read_all(bad_length)
    no_interface = shb("<") + epb("<", 3, 0, b"x")
    with pytest.raises(CaptureFileError, match="names interface 3, but the section has 0"):
        read_all(no_interface)
    bad_bom = block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x12345678, 1, 0, -1))
    with pytest.raises(CaptureFileError, match="unknown byte-order magic"):
        read_all(bad_bom)


def test_a_pcapng_cut_inside_a_block_is_read_up_to_there() -> None:
    data = shb("<") + idb("<", 1) + epb("<", 0, 0, b"one") + epb("<", 0, 0, b"two")[:-5]
    got, reader = read_all(data)
    assert [raw for _, raw, _ in got] == [b"one"] and reader.truncated
