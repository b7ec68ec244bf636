"""The header parser: what it makes of real frames, and that no bytes make it raise."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Packet, Raw

from amoskys.collectors.flow import parse as P

A, B = "10.0.0.1", "10.0.0.2"
A6, B6 = "2001:db8::a", "2001:db8::b"
ADDR4 = bytes((10, 0, 0, 1, 10, 0, 0, 2))
ADDR6 = bytes.fromhex("20010db8" + "00" * 11 + "0a" + "20010db8" + "00" * 11 + "0b")


def eth(pkt: Packet) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / pkt)


def parse(frame: bytes, vlan: int = 0) -> P.Packet | int:
    return P.parse_ethernet(frame, 0, len(frame), vlan)


def ports(sport: int, dport: int) -> bytes:
    return struct.pack("!HH", sport, dport)


def test_ipv4_tcp_gives_the_directional_key_ip_length_and_flags() -> None:
    frame = eth(IP(src=A, dst=B) / TCP(sport=40000, dport=80, flags="SA") / Raw(b"x" * 100))
    assert parse(frame) == (ADDR4 + ports(40000, 80), 6, 0, 140, 0x12, 0)


def test_octets_are_the_ip_length_even_when_the_capture_is_cut_short() -> None:
    frame = eth(IP(src=A, dst=B) / TCP(sport=1, dport=2, flags="A") / Raw(b"x" * 1400))
    assert parse(frame[:60])[P.OCTETS] == 1440  # type: ignore[index]


def test_ethernet_padding_is_neither_counted_nor_parsed() -> None:
    frame = eth(IP(src=A, dst=B) / UDP(sport=5, dport=6)) + bytes(30)
    assert parse(frame) == (ADDR4 + ports(5, 6), 17, 0, 28, 0, 0)


def test_ipv4_options_are_skipped() -> None:
    frame = eth(IP(src=A, dst=B, ihl=6, options=b"\x01\x01\x01\x00") / UDP(sport=7, dport=8))
    assert parse(frame) == (ADDR4 + ports(7, 8), 17, 0, 32, 0, 0)


def test_vlan_and_qinq_ids_are_kept_outer_and_inner() -> None:
    tagged = bytes(Ether() / Dot1Q(vlan=10) / IP(src=A, dst=B) / UDP(sport=1, dport=2))
    assert parse(tagged)[P.VLAN] == 10 << 12  # type: ignore[index]
    qinq = bytes(Ether(type=0x88A8) / Dot1AD(vlan=100) / Dot1Q(vlan=200) / IP(src=A, dst=B) / UDP())
    assert parse(qinq)[P.VLAN] == 100 << 12 | 200  # type: ignore[index]


def test_a_vlan_from_capture_metadata_is_the_outer_one() -> None:
    untagged = eth(IP(src=A, dst=B) / UDP(sport=1, dport=2))
    assert parse(untagged, vlan=30)[P.VLAN] == 30 << 12  # type: ignore[index]
    inner_left = bytes(Ether() / Dot1Q(vlan=7) / IP(src=A, dst=B) / UDP(sport=1, dport=2))
    assert parse(inner_left, vlan=30)[P.VLAN] == 30 << 12 | 7  # type: ignore[index]


def test_ipv6_extension_headers_are_walked_to_the_transport_header() -> None:
    pkt = IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt()
    frame = eth(pkt / TCP(sport=443, dport=50000, flags="PA") / Raw(b"y" * 10))
    assert parse(frame) == (ADDR6 + ports(443, 50000), 6, 0, 40 + 8 + 8 + 8 + 20 + 10, 0x18, 0)


def test_icmp_type_and_code_take_the_place_of_ports() -> None:
    assert parse(eth(IP(src=A, dst=B) / ICMP(type=3, code=1)))[P.KEY] == ADDR4 + ports(3, 1)  # type: ignore[index]
    echo6 = eth(IPv6(src=A6, dst=B6) / ICMPv6EchoRequest())
    assert parse(echo6)[:2] == (ADDR6 + ports(128, 0), 58)  # type: ignore[index]


def test_sctp_has_ports_and_other_protocols_none() -> None:
    assert parse(eth(IP(src=A, dst=B) / SCTP(sport=3868, dport=3869)))[P.KEY] == ADDR4 + ports(3868, 3869)  # type: ignore[index]
    assert parse(eth(IP(src=A, dst=B, proto=47) / Raw(b"\0" * 8)))[:2] == (ADDR4 + bytes(4), 47)  # type: ignore[index]


def test_ipv4_fragments_carry_ports_only_in_the_first() -> None:
    frags = [
        eth(f) for f in fragment(IP(src=A, dst=B, id=77) / UDP(sport=9, dport=10) / Raw(b"z" * 3000), 1400)
    ]
    first, *later = (parse(f) for f in frags)
    assert first == (ADDR4 + ports(9, 10), 17, 0, 1420, 0, 77 << 2 | P.FRAG_FIRST)
    assert all(p[P.KEY] == ADDR4 + bytes(4) and p[P.FRAG] == 77 << 2 | P.FRAG_LATER for p in later)  # type: ignore[index]


def test_ipv6_fragments_carry_ports_only_in_the_first() -> None:
    first = eth(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=5, m=1) / UDP(sport=1, dport=2) / Raw(b"a" * 16))
    later = eth(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=5, offset=3, nh=17) / Raw(b"a" * 16))
    assert parse(first)[P.KEY] == ADDR6 + ports(1, 2) and parse(first)[P.FRAG] == 5 << 2 | P.FRAG_FIRST  # type: ignore[index]
    assert parse(later)[:2] == (ADDR6 + bytes(4), 17) and parse(later)[P.FRAG] == 5 << 2 | P.FRAG_LATER  # type: ignore[index]


def test_unusable_frames_are_counted_by_reason() -> None:
    tcp = eth(IP(src=A, dst=B) / TCP(sport=1, dport=2))
    bad_version = bytearray(tcp)
    bad_version[14] = 0x65
    assert parse(b"\x00" * 13) == P.TRUNCATED_LINK
    assert parse(bytes(Ether() / Dot1Q(vlan=1) / IP())[:16]) == P.TRUNCATED_LINK
    assert parse(bytes(Ether() / ARP())) == P.NOT_IP
    assert parse(tcp[:30]) == P.TRUNCATED_IP
    assert parse(bytes(bad_version)) == P.BAD_IP_HEADER
    assert parse(tcp[:40]) == P.TRUNCATED_TRANSPORT  # 6 of the 14 TCP bytes it needs


def test_other_link_types() -> None:
    ip = bytes(IP(src=A, dst=B) / UDP(sport=1, dport=2))
    assert P.parser_for(P.LINKTYPE_RAW)(ip, 0, len(ip))[P.KEY] == ADDR4 + ports(1, 2)  # type: ignore[index]
    sll = bytes(CookedLinux(proto=0x0800) / ip)
    assert P.parser_for(P.LINKTYPE_LINUX_SLL)(sll, 0, len(sll))[P.KEY] == ADDR4 + ports(1, 2)  # type: ignore[index]
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, bytes(8)) + ip
    assert P.parser_for(P.LINKTYPE_LINUX_SLL2)(sll2, 0, len(sll2))[P.KEY] == ADDR4 + ports(1, 2)  # type: ignore[index]
    null = struct.pack("<I", 2) + ip
    assert P.parser_for(P.LINKTYPE_NULL)(null, 0, len(null))[P.KEY] == ADDR4 + ports(1, 2)  # type: ignore[index]
    assert P.parser_for(147)(ip, 0, len(ip)) == P.UNSUPPORTED_LINK_TYPE


def test_split_key_gives_addresses_and_ports_back() -> None:
    assert P.split_key(ADDR4 + ports(1, 65535)) == (ADDR4[:4], ADDR4[4:], 1, 65535)
    assert P.split_key(ADDR6 + ports(80, 8080)) == (ADDR6[:16], ADDR6[16:], 80, 8080)


def test_parse_reads_frames_inside_a_larger_buffer_and_memoryviews() -> None:
    frame = eth(IP(src=A, dst=B) / TCP(sport=3, dport=4, flags="S"))
    buf = memoryview(bytearray(b"\xff" * 7 + frame + b"\xee" * 9))
    assert P.parse_ethernet(buf, 7, 7 + len(frame)) == parse(frame)


# ---------------------------------------------------------------- properties
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [
    eth(IP(src=A, dst=B) / TCP(sport=1, dport=2, flags="S")),
    eth(IP(src=A, dst=B) / UDP(sport=1, dport=2) / Raw(b"q" * 8)),
    eth(IPv6(src=A6, dst=B6) / TCP(sport=1, dport=2, flags="FA")),
    eth(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2)),
    bytes(Ether(type=0x88A8) / Dot1AD(vlan=1) / Dot1Q(vlan=2) / IP(src=A, dst=B) / ICMP()),
    eth(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(offset=1) / Raw(b"r" * 8)),
]


def mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """The seed frame with some bytes changed and maybe cut: reaches deep into the header paths."""
    edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=6)
    return st.builds(lambda e, cut: bytes(_apply(seed, e))[:cut], edits, st.integers(0, len(seed) + 4))


def _apply(seed: bytes, edits: list[tuple[int, int]]) -> bytearray:
    out = bytearray(seed)
    for i, v in edits:
        out[i] = v
    return out


frames = st.one_of(st.binary(max_size=200), *(mutated(s) for s in SEEDS))


@FUZZ
@given(frames, st.integers(0, 4095))
def test_no_bytes_make_any_parser_raise(frame: bytes, vlan: int) -> None:
    for linktype in (*P.PARSERS, 147):
        assert isinstance(P.parser_for(linktype)(frame, 0, len(frame)), (int, tuple))
        assert isinstance(P.parser_for(linktype)(frame, 0, len(frame), vlan), (int, tuple))
    result = P.parse_ethernet(frame, 0, len(frame), vlan)
    if isinstance(result, int):
        assert 0 <= result < len(P.REASONS)
    else:
        key, proto, vlan_ids, octets, flags, frag = result
        assert len(key) in (12, 36) and 0 <= proto < 256 and 0 <= flags < 256 and octets >= 0
        assert 0 <= vlan_ids < 1 << 24 and frag >= 0


@FUZZ
@given(frames, st.integers(0, 4095))
def test_the_fast_path_agrees_with_the_general_path(frame: bytes, vlan: int) -> None:
    assert P.parse_ethernet(frame, 0, len(frame), vlan) == P._parse_ethernet(frame, 0, len(frame), vlan)


@FUZZ
@given(frames, st.binary(max_size=9), st.binary(max_size=9))
def test_bytes_around_the_frame_never_change_the_result(frame: bytes, before: bytes, after: bytes) -> None:
    buf = before + frame + after
    assert P.parse_ethernet(buf, len(before), len(before) + len(frame)) == parse(frame)
