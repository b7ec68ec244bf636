"""ARP on Ethernet, pure: build a request frame, parse a frame into an ArpPacket (bytes in, records out)."""

from __future__ import annotations

import struct
from typing import NamedTuple

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6

REQUEST = 1
REPLY = 2

#: Ethernet header (dst, src, type) + ARP for Ethernet/IPv4 (htype, ptype, hlen, plen, op, sha, spa, tha, tpa).
_FRAME = struct.Struct("!6s6sH HHBBH6s4s6s4s")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
#: Minimum Ethernet payload: frames are padded to 60 bytes (without FCS).
MIN_FRAME = 60


class ArpPacket(NamedTuple):
    """One ARP message for IPv4 over Ethernet (addresses as raw bytes)."""

    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes


def build_request(src_mac: bytes, src_ip: bytes, target_ip: bytes) -> bytes:
    """A broadcast ARP request "who has `target_ip`? tell `src_ip`" from `src_mac`, padded to 60 bytes."""
    frame = _FRAME.pack(
        BROADCAST, src_mac, ETH_P_ARP, 1, ETH_P_IP, 6, 4, REQUEST, src_mac, src_ip, ZERO_MAC, target_ip
    )
    return frame + b"\x00" * (MIN_FRAME - len(frame))


def ethertype(frame: bytes) -> tuple[int, int]:
    """``(ethertype, payload offset)`` of an Ethernet frame, VLAN tags skipped; (-1, 0) when truncated."""
    if len(frame) < 14:
        return -1, 0
    etype = frame[12] << 8 | frame[13]
    off = 14
    while etype in _VLAN_TPIDS:
        if len(frame) < off + 4:
            return -1, 0
        etype = frame[off + 2] << 8 | frame[off + 3]
        off += 4
    return etype, off


def parse_frame(frame: bytes) -> ArpPacket | None:
    """The ARP message in an Ethernet frame, or None when the frame is not ARP for IPv4 over Ethernet."""
    etype, off = ethertype(frame)
    if etype != ETH_P_ARP or len(frame) < off + _ARP.size:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, off)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        return None
    return ArpPacket(op, sha, spa, tha, tpa)
