"""Community ID v1 (corelight community-id-spec): a flow's hash that Zeek, Suricata and others share.

``"1:" + base64(SHA-1(seed ‖ saddr ‖ daddr ‖ proto ‖ 0 ‖ sport ‖ dport))`` with the endpoints in a
canonical order (smaller address, then port, first; raw network-order bytes compared) so that both
directions of a flow hash alike. ICMP and ICMPv6 use the type as sport and the code as dport, except
for request/response types, where dport is the partner type and the pair orders like ports; the other
ICMP types are one-way and never reordered. Protocols without ports hash without the port fields.

Pure and shared: the flow collector computes its records' IDs with it, and so does `amoskys loadgen`
(a core module may not import a collector's folder).
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from base64 import b64encode

#: Request/response ICMP types and their partners (both ways).
ICMP4_PAIRS: dict[int, int] = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PAIRS: dict[int, int] = {
    128: 129,
    129: 128,
    130: 131,
    131: 130,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}
#: Protocols whose port fields enter the hash.
PORT_PROTOCOLS = frozenset((1, 6, 17, 58, 132))

_HEAD = struct.Struct("!H")
_TAIL_PORTS = struct.Struct("!BxHH")
_TAIL = struct.Struct("!Bx")


def icmp_ports(proto: int, icmp_type: int, code: int) -> tuple[int, int, bool]:
    """``(sport, dport, one_way)`` for an ICMP (1) or ICMPv6 (58) type and code."""
    pairs = ICMP4_PAIRS if proto == 1 else ICMP6_PAIRS
    partner = pairs.get(icmp_type)
    if partner is None:
        return icmp_type, code, True
    return icmp_type, partner, False


def community_id(saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """The Community ID v1 of a packet from ``saddr:sport`` to ``daddr:dport`` (raw address bytes,
    4 or 16 long; for ICMP the type and code as sport and dport)."""
    one_way = False
    if proto == 1 or proto == 58:
        sport, dport, one_way = icmp_ports(proto, sport, dport)
    if not one_way and (daddr < saddr or (daddr == saddr and dport < sport)):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    if proto in PORT_PROTOCOLS:
        tail = _TAIL_PORTS.pack(proto, sport, dport)
    else:
        tail = _TAIL.pack(proto)
    digest = hashlib.sha1(_HEAD.pack(seed) + saddr + daddr + tail, usedforsecurity=False).digest()
    return "1:" + b64encode(digest).decode("ascii")


def community_id_of(
    saddr: str, daddr: str, proto: int, sport: int | None, dport: int | None, seed: int = 0
) -> str:
    """The same, from address strings (``"10.0.0.1"``, ``"fe80::1"``); None ports count as 0."""
    return community_id(
        ipaddress.ip_address(saddr).packed,
        ipaddress.ip_address(daddr).packed,
        proto,
        sport or 0,
        dport or 0,
        seed,
    )
