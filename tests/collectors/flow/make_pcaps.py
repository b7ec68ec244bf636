"""Write the flow meter's golden test cases (scapy, test-only) and, on request, their expected output.

    .venv/bin/python tests/collectors/flow/make_pcaps.py             # rewrite testcases/*/input.*
    .venv/bin/python tests/collectors/flow/make_pcaps.py --expected  # ... and expected.jsonl/.txt

Each ``testcases/<case>/`` holds the capture (``input.pcap`` or ``input.pcapng``), an optional
``config.toml`` (a ``[collectors.flow]`` section) and the expected output of ``amoskys flows read``
in both formats. The expected files are written only by ``--expected`` — review them in the diff;
``test_golden.py`` compares, it never rewrites. Same script, same bytes: every field scapy would
otherwise pick (IP ids, sequence numbers, times) is set here.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, IPOption_RR, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    fragment6,
)
from scapy.layers.l2 import ARP, CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.packet import Packet, Raw

from flow_traffic import NS, pcap_header, pcap_record

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "testcases"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
A6, B6 = "2001:db8::a", "2001:db8::b"

# (seconds after T0, frame bytes, original length or None = len(frame), interface name or None)
Frame = tuple[float, bytes, int | None, str | None]


def eth(pkt: Packet, reverse: bool = False) -> Packet:
    return (Ether(src=MAC_B, dst=MAC_A) if reverse else Ether(src=MAC_A, dst=MAC_B)) / pkt


def tcp(
    src: str, dst: str, sport: int, dport: int, flags: str, size: int = 0, seq: int = 1000, ack: int = 0
) -> Packet:
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst, id=sport & 0xFFFF)
    pkt = ip / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=64240)
    return pkt / Raw(b"x" * size) if size else pkt


def udp(src: str, dst: str, sport: int, dport: int, size: int) -> Packet:
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst, id=sport & 0xFFFF)
    return ip / UDP(sport=sport, dport=dport) / Raw(b"u" * size)


def frames(*items: tuple[float, Packet | bytes]) -> list[Frame]:
    return [(t, bytes(p), None, None) for t, p in items]


def handshake_fin(client: str, server: str, sport: int, dport: int, t: float) -> list[tuple[float, Packet]]:
    """A whole TCP connection: handshake, a request and a response, FINs both ways, last ACK."""
    rev = True
    return [
        (t + 0.000, eth(tcp(client, server, sport, dport, "S", seq=100))),
        (t + 0.010, eth(tcp(server, client, dport, sport, "SA", seq=500, ack=101), rev)),
        (t + 0.020, eth(tcp(client, server, sport, dport, "A", seq=101, ack=501))),
        (t + 0.030, eth(tcp(client, server, sport, dport, "PA", 100, seq=101, ack=501))),
        (t + 0.040, eth(tcp(server, client, dport, sport, "A", seq=501, ack=201), rev)),
        (t + 0.050, eth(tcp(server, client, dport, sport, "PA", 1000, seq=501, ack=201), rev)),
        (t + 0.060, eth(tcp(client, server, sport, dport, "A", seq=201, ack=1501))),
        (t + 0.070, eth(tcp(client, server, sport, dport, "FA", seq=201, ack=1501))),
        (t + 0.080, eth(tcp(server, client, dport, sport, "FA", seq=1501, ack=202), rev)),
        (t + 0.090, eth(tcp(client, server, sport, dport, "A", seq=202, ack=1502))),
    ]


# ---------------------------------------------------------------- cases
def case_tcp_fin() -> list[Frame]:
    """A full connection; a retransmitted FIN inside the 5 s linger still counts; a later UDP packet
    moves packet time past the linger, so the TCP flow ends (end_of_flow) before the file does."""
    items = handshake_fin(A, B, 40000, 80, 0.0)
    items.append((1.0, eth(tcp(B, A, 80, 40000, "FA", seq=1501, ack=202), True)))
    items.append((10.0, eth(udp(C, B, 5000, 53, 30))))
    return frames(*items)


def case_tcp_rst() -> list[Frame]:
    """Handshake, request, then the server resets; a late ACK within the linger joins the flow."""
    return frames(
        (0.000, eth(tcp(A, B, 40001, 443, "S", seq=1))),
        (0.005, eth(tcp(B, A, 443, 40001, "SA", seq=9, ack=2), True)),
        (0.010, eth(tcp(A, B, 40001, 443, "A", seq=2, ack=10))),
        (0.020, eth(tcp(A, B, 40001, 443, "PA", 200, seq=2, ack=10))),
        (0.030, eth(tcp(B, A, 443, 40001, "R", seq=10), True)),
        (2.000, eth(tcp(A, B, 40001, 443, "A", seq=202, ack=10))),
    )


def case_tcp_half_open() -> list[Frame]:
    """A SYN retransmitted twice and never answered ends by the TCP idle timeout (300 s after its
    last packet, seen when a later packet moves time past it); a second unanswered SYN is still
    open at the end of the file (forced_end)."""
    return frames(
        (0.0, eth(tcp(A, B, 40002, 22, "S", seq=1))),
        (1.0, eth(tcp(A, B, 40002, 22, "S", seq=1))),
        (3.0, eth(tcp(A, B, 40002, 22, "S", seq=1))),
        (400.0, eth(tcp(A, B, 40003, 22, "S", seq=1))),
    )


def case_tcp_port_reuse() -> list[Frame]:
    """A closed connection, then a new SYN on the same ports within the linger: a new flow."""
    items = handshake_fin(A, B, 40004, 80, 0.0)
    items += handshake_fin(A, B, 40004, 80, 1.0)
    return frames(*items)


def case_udp() -> list[Frame]:
    """DNS queries and answers (one flow per client port); a UDP flow quiet for more than the 60 s
    idle timeout is two flows."""
    return frames(
        (0.00, eth(udp(A, "8.8.8.8", 53000, 53, 30))),
        (0.02, eth(udp("8.8.8.8", A, 53, 53000, 120), True)),
        (0.05, eth(udp(A, "8.8.8.8", 53001, 53, 31))),
        (0.07, eth(udp("8.8.8.8", A, 53, 53001, 200), True)),
        (1.00, eth(udp(A, B, 6000, 7000, 10))),
        (1.50, eth(udp(B, A, 7000, 6000, 10), True)),
        (100.0, eth(udp(A, B, 6000, 7000, 10))),
    )


def case_icmp() -> list[Frame]:
    """Echo requests and replies pair into one flow; a port unreachable is a one-way flow of its own
    (beside the UDP packet that caused it); timestamp request/reply pair too."""
    items: list[tuple[float, Packet]] = []
    for seq in range(3):
        t = float(seq)
        items.append((t, eth(IP(src=A, dst=B, id=seq + 1) / ICMP(type=8, id=7, seq=seq) / Raw(b"p" * 56))))
        items.append(
            (
                t + 0.001,
                eth(IP(src=B, dst=A, id=seq + 11) / ICMP(type=0, id=7, seq=seq) / Raw(b"p" * 56), True),
            )
        )
    probe = IP(src=A, dst=B, id=50) / UDP(sport=33434, dport=33435) / Raw(b"t" * 12)
    items.append((4.0, eth(probe)))
    items.append((4.001, eth(IP(src=B, dst=A, id=51) / ICMP(type=3, code=3) / bytes(probe)[:28], True)))
    items.append((5.0, eth(IP(src=A, dst=C, id=60) / ICMP(type=13, id=9, seq=1) / Raw(b"\0" * 12))))
    items.append((5.001, eth(IP(src=C, dst=A, id=61) / ICMP(type=14, id=9, seq=1) / Raw(b"\0" * 12), True)))
    return frames(*items)


def case_ipv6() -> list[Frame]:
    """TCP over IPv6 (a hop-by-hop header on the SYN), ICMPv6 echo, neighbour solicitation and
    advertisement (a pair), UDP behind a destination-options header."""
    syn = IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / TCP(sport=41000, dport=443, flags="S", seq=1)
    items: list[tuple[float, Packet]] = [(0.0, eth(syn))]
    items += [
        (0.01, eth(tcp(B6, A6, 443, 41000, "SA", seq=5, ack=2), True)),
        (0.02, eth(tcp(A6, B6, 41000, 443, "A", seq=2, ack=6))),
        (0.03, eth(tcp(A6, B6, 41000, 443, "PA", 300, seq=2, ack=6))),
        (0.04, eth(tcp(B6, A6, 443, 41000, "PA", 900, seq=6, ack=302), True)),
        (0.05, eth(tcp(A6, B6, 41000, 443, "R", seq=302))),
        (1.00, eth(IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=3, seq=1, data=b"e" * 32))),
        (1.01, eth(IPv6(src=B6, dst=A6) / ICMPv6EchoReply(id=3, seq=1, data=b"e" * 32), True)),
        (2.00, eth(IPv6(src=A6, dst="ff02::1:ff00:b", hlim=255) / ICMPv6ND_NS(tgt=B6))),
        (2.01, eth(IPv6(src=B6, dst=A6, hlim=255) / ICMPv6ND_NA(tgt=B6, R=0, S=1, O=1), True)),
        (
            3.00,
            eth(IPv6(src=A6, dst=B6) / IPv6ExtHdrDestOpt() / UDP(sport=5000, dport=5001) / Raw(b"d" * 20)),
        ),
    ]
    return frames(*items)


def case_vlan() -> list[Frame]:
    """The same TCP 5-tuple on VLAN 10 and on VLAN 20 is two flows."""
    items: list[tuple[float, Packet]] = []
    for t, vid in ((0.0, 10), (0.5, 20)):
        items.append((t, Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=vid) / tcp(A, B, 42000, 80, "S", seq=1)))
        items.append(
            (
                t + 0.01,
                Ether(src=MAC_B, dst=MAC_A) / Dot1Q(vlan=vid) / tcp(B, A, 80, 42000, "SA", seq=7, ack=2),
            )
        )
    return frames(*items)


def case_qinq() -> list[Frame]:
    """802.1ad (QinQ): the record keeps the outer (100) and inner (200) VLAN; the same 5-tuple under
    another inner VLAN is another flow."""
    items: list[tuple[float, Packet]] = []
    for t, inner in ((0.0, 200), (0.5, 201)):
        qinq = Ether(src=MAC_A, dst=MAC_B, type=0x88A8) / Dot1AD(vlan=100) / Dot1Q(vlan=inner)
        items.append((t, qinq / udp(A, B, 7000, 8000, 64)))
        back = Ether(src=MAC_B, dst=MAC_A, type=0x88A8) / Dot1AD(vlan=100) / Dot1Q(vlan=inner)
        items.append((t + 0.1, back / udp(B, A, 8000, 7000, 64)))
    return frames(*items)


def case_fragments() -> list[Frame]:
    """A 3000-byte UDP datagram in three IPv4 fragments joins one flow with its (unfragmented)
    answer; a later fragment whose first was never seen joins a port-0 flow; IPv6 fragments too."""
    big = IP(src=A, dst=B, id=4242) / UDP(sport=9000, dport=9001) / Raw(b"f" * 3000)
    items: list[tuple[float, Packet]] = []
    for i, frag in enumerate(fragment(big, fragsize=1200)):
        items.append((0.001 * i, eth(frag)))
    items.append((0.01, eth(udp(B, A, 9001, 9000, 40), True)))
    orphan = IP(src=C, dst=B, id=777, proto=17, flags=0, frag=150) / Raw(b"o" * 100)
    items.append((0.02, eth(orphan)))
    big6 = (
        IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=0xABCD) / UDP(sport=9100, dport=9101) / Raw(b"g" * 2000)
    )
    for i, frag in enumerate(fragment6(big6, 1280)):
        items.append((0.03 + 0.001 * i, eth(frag)))
    return frames(*items)


def case_truncated_and_garbage() -> list[Frame]:
    """A capture cut at 64 bytes still counts the IP length; frames too short for their headers,
    impossible IP headers, ARP and LLDP, and random bytes are skipped by reason."""
    rng = random.Random(7)
    full = bytes(eth(tcp(A, B, 43000, 80, "PA", 1400, seq=1, ack=1)))
    ipv4_tcp = bytes(eth(tcp(A, B, 43001, 80, "A", seq=1, ack=1)))
    bad_version = bytearray(ipv4_tcp)
    bad_version[14] = 0x55  # version 5
    short_ihl = bytearray(ipv4_tcp)
    short_ihl[14] = 0x43  # IHL 3 (12 bytes)
    arp = bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=A, pdst=B, hwsrc=MAC_A))
    lldp = bytes(Ether(src=MAC_A, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04" + b"\0" * 30))
    vlan_cut = bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=5) / tcp(A, B, 1, 2, "S"))[:16]
    return [
        (0.0, full[:64], len(full), None),  # snap length 64: octets still 1440
        (0.1, full[:10], len(full), None),  # truncated_link
        (0.2, ipv4_tcp[:24], len(ipv4_tcp), None),  # truncated_ip
        (0.3, ipv4_tcp[:42], len(ipv4_tcp), None),  # truncated_transport (8 of 20 TCP bytes)
        (0.4, bytes(bad_version), None, None),  # bad_ip_header
        (0.5, bytes(short_ihl), None, None),  # bad_ip_header
        (0.6, arp, None, None),  # not_ip
        (0.7, lldp, None, None),  # not_ip
        (0.8, vlan_cut, None, None),  # truncated_link
        (0.9, rng.randbytes(60), None, None),  # whatever random bytes are
        (1.0, b"", 0, None),  # an empty record: truncated_link
    ]


def case_interim() -> list[Frame]:
    """A UDP stream of one packet every 10 s each way for 200 s, with active_timeout 60 s: interim
    records (final false, deltas) every 60 s, then the rest at the end of the file."""
    items: list[tuple[float, Packet]] = []
    for i in range(21):
        items.append((10.0 * i, eth(udp(A, B, 30000, 30001, 100 + i))))
        items.append((10.0 * i + 0.5, eth(udp(B, A, 30001, 30000, 200), True)))
    return frames(*items)


def case_table_full() -> list[Frame]:
    """With max_flows 2, a third and fourth flow each end the flow due soonest (lack_of_resources);
    the LossReport count shows in the summary as flows_evicted."""
    items: list[tuple[float, Packet]] = []
    for i in range(4):
        items.append((float(i), eth(udp(A, B, 20000 + i, 53, 20))))
        items.append((float(i) + 0.1, eth(udp(B, A, 53, 20000 + i, 80), True)))
    items.append((5.0, eth(udp(A, B, 20000, 53, 20))))
    return frames(*items)


def case_misc_protocols() -> list[Frame]:
    """SCTP (ports), GRE and ESP (no ports), and IPv4 with options."""
    sctp = IP(src=A, dst=B, id=1) / SCTP(sport=3868, dport=3868, tag=1) / SCTPChunkData(data=b"s" * 40)
    sctp_back = IP(src=B, dst=A, id=2) / SCTP(sport=3868, dport=3868, tag=2) / SCTPChunkData(data=b"s" * 8)
    gre = IP(src=A, dst=C, id=3) / GRE() / IP(src="192.168.0.1", dst="192.168.0.2") / ICMP()
    esp = IP(src=C, dst=A, id=4, proto=50) / Raw(b"\0\0\0\x01\0\0\0\x01" + b"e" * 48)
    opts = IP(src=A, dst=B, id=5, options=[IPOption_RR(routers=["0.0.0.0"])]) / TCP(
        sport=44000, dport=25, flags="S", seq=1
    )
    return frames(
        (0.0, eth(sctp)),
        (0.1, eth(sctp_back, True)),
        (0.2, eth(gre)),
        (0.3, eth(esp, True)),
        (0.4, eth(opts)),
    )


def case_linux_sll() -> list[Frame]:
    """`tcpdump -i any` captures: Linux cooked headers (link type 113), no MAC addresses."""
    return frames(
        (
            0.0,
            CookedLinux(pkttype=4, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x0a\0\0", proto=0x0800)
            / udp(A, B, 1234, 53, 30),
        ),
        (
            0.1,
            CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x0b\0\0", proto=0x0800)
            / udp(B, A, 53, 1234, 90),
        ),
        (
            0.2,
            CookedLinux(pkttype=4, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x0a\0\0", proto=0x86DD)
            / udp(A6, B6, 1234, 53, 30),
        ),
    )


def case_pcapng() -> list[Frame]:
    """pcapng with two interfaces of different link types (Ethernet, raw IP): one flow seen on both
    is one flow (the interface is not part of the key); a connection on eth0 only."""
    items = [(t, bytes(p), None, "eth0") for t, p in handshake_fin(A, B, 45000, 8080, 0.0)]
    items.append((0.5, bytes(udp(A, C, 6000, 6001, 10)), None, "tun0"))
    items.append((0.6, bytes(eth(udp(C, A, 6001, 6000, 12), True)), None, "eth0"))
    return items


CASES: dict[str, tuple[Callable[[], list[Frame]], int, str, str]] = {
    # name: (frames, link type, file format, config.toml text)
    "tcp_fin": (case_tcp_fin, 1, "pcap", ""),
    "tcp_rst": (case_tcp_rst, 1, "pcap", ""),
    "tcp_half_open": (case_tcp_half_open, 1, "pcap", ""),
    "tcp_port_reuse": (case_tcp_port_reuse, 1, "pcap", ""),
    "udp": (case_udp, 1, "pcap", ""),
    "icmp": (case_icmp, 1, "pcap", ""),
    "ipv6": (case_ipv6, 1, "pcap", ""),
    "vlan": (case_vlan, 1, "pcap", ""),
    "qinq": (case_qinq, 1, "pcap", ""),
    "fragments": (case_fragments, 1, "pcap", ""),
    "truncated_and_garbage": (case_truncated_and_garbage, 1, "pcap", ""),
    "interim": (case_interim, 1, "pcap", "[collectors.flow]\nactive_timeout_seconds = 60.0\n"),
    "table_full": (case_table_full, 1, "pcap", "[collectors.flow]\nmax_flows = 2\n"),
    "misc_protocols": (case_misc_protocols, 1, "pcap", ""),
    "linux_sll": (case_linux_sll, 113, "pcap", ""),
    "pcapng": (case_pcapng, 1, "pcapng", ""),
}
#: cases whose packets contain no IP fragments and whose timeouts softflowd can match exactly
PEER_CASES = ("tcp_fin", "tcp_rst", "tcp_half_open", "udp", "icmp", "ipv6", "vlan", "misc_protocols")
LINKTYPE_RAW = 101


def input_path(name: str) -> Path:
    return CASES_DIR / name / ("input.pcapng" if CASES[name][2] == "pcapng" else "input.pcap")


def pcapng_bytes(items: list[Frame], linktypes: dict[str, int]) -> bytes:
    """A little-endian pcapng: a section header, one interface block per interface name (in order of
    first use), then an Enhanced Packet Block per frame (microsecond timestamps, the default)."""

    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        length = 12 + len(body)
        return struct.pack("<II", btype, length) + body + struct.pack("<I", length)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    ids: dict[str, int] = {}
    for t, raw, orig, ifname in items:
        name = ifname or "eth0"
        if name not in ids:
            ids[name] = len(ids)
            opt = name.encode()
            options = struct.pack("<HH", 2, len(opt)) + opt + bytes(-len(opt) % 4) + bytes(4)
            out.append(block(1, struct.pack("<HHI", linktypes[name], 0, 262144) + options))
        ts = (T0 * 1_000_000) + round(t * 1_000_000)
        header = struct.pack("<IIIII", ids[name], ts >> 32, ts & 0xFFFFFFFF, len(raw), orig or len(raw))
        out.append(block(6, header + raw))
    return b"".join(out)


def write_case(name: str) -> Path:
    make, linktype, fmt, config = CASES[name]
    folder = CASES_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    path = input_path(name)
    items = make()
    if fmt == "pcapng":
        path.write_bytes(pcapng_bytes(items, {"eth0": linktype, "tun0": LINKTYPE_RAW}))
    else:
        records = [pcap_header(262144, linktype)]
        for t, raw, orig, _ifname in items:
            ts = T0 * NS + round(t * 1_000_000) * 1000
            records.append(pcap_record(ts, raw, orig if orig is not None else len(raw)))
        path.write_bytes(b"".join(records))
    config_path = folder / "config.toml"
    if config:
        config_path.write_text(config)
    elif config_path.exists():
        config_path.unlink()
    return path


def write_expected(name: str) -> None:
    sys.path.insert(0, str(HERE))
    from flow_golden import run_case

    folder = CASES_DIR / name
    for fmt, suffix in (("jsonl", "jsonl"), ("table", "txt")):
        text, _err, code = run_case(name, fmt)
        if code != 0:
            raise SystemExit(f"{name}: flows read exited {code}")
        (folder / f"expected.{suffix}").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expected", action="store_true", help="also rewrite expected.jsonl/.txt")
    parser.add_argument("cases", nargs="*", help="only these cases (default: all)")
    args = parser.parse_args()
    names = args.cases or list(CASES)
    for name in names:
        path = write_case(name)
        print(f"wrote {path.relative_to(HERE)}")
        if args.expected:
            write_expected(name)
            print(f"wrote {name}/expected.jsonl, expected.txt")


if __name__ == "__main__":
    main()
