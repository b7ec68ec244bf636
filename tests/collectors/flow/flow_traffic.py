"""Synthetic random traffic written straight to pcap with struct (no scapy: a million packets in
seconds), for the peer cross-check and the benchmark.

Conversations are drawn from a seeded RNG and interleaved: TCP (handshake, data both ways, FIN or
RST close), UDP request/response, ICMP echo, over IPv4 and IPv6, some 802.1Q-tagged. Frames are
cut at ``snaplen`` (as ``tcpdump -s``), while their IP headers carry the full length: the meter must
count the IP length, not the captured bytes. Same seed, same bytes.

    python tests/collectors/flow/flow_traffic.py OUT.pcap --packets 1000000
"""

from __future__ import annotations

import argparse
import random
import struct
from collections.abc import Iterator
from pathlib import Path

NS = 1_000_000_000
START_NS = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z

_ETH = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")
_V4 = struct.Struct("!BBHHHBBH4s4s")
_V6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHHH")
_REC = struct.Struct("<IIII")
_ZEROS = bytes(65_536)


def pcap_header(snaplen: int, linktype: int = 1) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts_ns: int, frame: bytes, orig_len: int) -> bytes:
    sec, ns = divmod(ts_ns, NS)
    return _REC.pack(sec, ns // 1000, len(frame), orig_len) + frame


class _Conversation:
    """One flow's packet plan: a list of (direction, proto-specific flags/type, payload bytes)."""

    __slots__ = ("dport", "dst", "icmp_id", "ident", "link", "proto", "sport", "src", "steps", "v6")

    def __init__(self, rng: random.Random, serial: int) -> None:
        self.v6 = rng.random() < 0.15
        vlan = rng.choice((0, 0, 0, 10, 20)) if rng.random() < 0.2 else 0
        mac_a = bytes((2, 0, 0, 0, serial >> 8 & 255, serial & 255))
        mac_b = bytes((2, 0, 0, 1, rng.randrange(256), rng.randrange(256)))
        etype = 0x86DD if self.v6 else 0x0800
        fwd = _ETH.pack(mac_b, mac_a, 0x8100 if vlan else etype)
        rev = _ETH.pack(mac_a, mac_b, 0x8100 if vlan else etype)
        if vlan:
            fwd += _TAG.pack(vlan, etype)
            rev += _TAG.pack(vlan, etype)
        self.link = (fwd, rev)
        if self.v6:
            self.src = b"\xfd\x00" + bytes(10) + rng.randbytes(4)
            self.dst = b"\xfd\x00\x00\x01" + bytes(8) + rng.randbytes(4)
        else:
            self.src = bytes((10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)))
            self.dst = bytes((172, 16, rng.randrange(256), rng.randrange(1, 255)))
        self.sport = rng.randrange(1024, 65536)
        self.ident = rng.randrange(65536)
        self.icmp_id = rng.randrange(65536)
        kind = rng.random()
        if kind < 0.7:
            self.proto = 6
            self.dport = rng.choice((80, 443, 22, 8080, 5432))
            steps = [(0, 0x02, 0), (1, 0x12, 0), (0, 0x10, 0)]
            for _ in range(rng.randrange(1, 30)):
                steps.append((0, 0x18, rng.randrange(1, 1400)))
                steps.append((1, 0x10 if rng.random() < 0.5 else 0x18, rng.randrange(0, 1460)))
            if rng.random() < 0.85:
                steps += [(0, 0x11, 0), (1, 0x11, 0), (0, 0x10, 0)]
            else:
                steps.append((rng.randrange(2), 0x04, 0))
        elif kind < 0.92:
            self.proto = 17
            self.dport = rng.choice((53, 123, 5353, 4789))
            steps = []
            for _ in range(rng.randrange(1, 6)):
                steps.append((0, 0, rng.randrange(20, 512)))
                steps.append((1, 0, rng.randrange(20, 1200)))
        else:
            self.proto = 58 if self.v6 else 1
            self.dport = 0
            steps = []
            for _ in range(rng.randrange(1, 5)):
                steps.append((0, 128 if self.v6 else 8, 56))
                steps.append((1, 129 if self.v6 else 0, 56))
        steps.reverse()  # pop() from the end
        self.steps = steps

    def next_frame(self, snaplen: int) -> tuple[bytes, int]:
        direction, flag, payload = self.steps.pop()
        src, dst = (self.src, self.dst) if direction == 0 else (self.dst, self.src)
        sport, dport = (self.sport, self.dport) if direction == 0 else (self.dport, self.sport)
        if self.proto == 6:
            l4 = _TCP.pack(sport, dport, 1000, 2000, 0x50, flag, 65535, 0, 0)
        elif self.proto == 17:
            l4 = _UDP.pack(sport, dport, 8 + payload, 0)
        else:
            l4 = _ICMP.pack(flag, 0, 0, self.icmp_id, len(self.steps))
        self.ident = (self.ident + 1) & 0xFFFF
        if self.v6:
            ip = _V6.pack(0x60000000, len(l4) + payload, self.proto, 64, src, dst)
        else:
            ip = _V4.pack(0x45, 0, 20 + len(l4) + payload, self.ident, 0x4000, 64, self.proto, 0, src, dst)
        frame = self.link[direction] + ip + l4
        orig = len(frame) + payload
        if len(frame) < snaplen:
            frame += _ZEROS[: min(payload, snaplen - len(frame))]
        return frame[:snaplen], orig


def packets(
    count: int, *, seed: int = 1, concurrent: int = 2000, rate_pps: int = 200_000, snaplen: int = 128
) -> Iterator[tuple[int, bytes, int]]:
    """``count`` packets as (ts_ns, captured frame, original length), ``rate_pps`` apart on average."""
    rng = random.Random(seed)
    serial = 0
    active: list[_Conversation] = []
    for _ in range(concurrent):
        active.append(_Conversation(rng, serial))
        serial += 1
    ts = START_NS
    gap = NS // rate_pps
    for _ in range(count):
        i = rng.randrange(len(active))
        conv = active[i]
        frame, orig = conv.next_frame(snaplen)
        yield ts, frame, orig
        if not conv.steps:
            active[i] = _Conversation(rng, serial)
            serial += 1
        ts += rng.randrange(1, 2 * gap)


def write(path: Path, count: int, **kw: int) -> int:
    """Write ``count`` packets to the pcap at ``path``; returns the file size."""
    snaplen = kw.get("snaplen", 128)
    with open(path, "wb") as out:
        out.write(pcap_header(snaplen))
        chunk: list[bytes] = []
        for ts, frame, orig in packets(count, **kw):
            chunk.append(pcap_record(ts, frame, orig))
            if len(chunk) >= 10_000:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--snaplen", type=int, default=128)
    args = parser.parse_args()
    size = write(args.out, args.packets, seed=args.seed, concurrent=args.concurrent, snaplen=args.snaplen)
    print(f"wrote {args.packets} packets ({size} bytes) to {args.out}")


if __name__ == "__main__":
    main()
