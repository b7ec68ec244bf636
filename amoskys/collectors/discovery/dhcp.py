"""DHCP (BOOTP over UDP/IPv4 in Ethernet), pure: what a frame says about its client.

A client's messages carry its MAC (``chaddr``), often its host name (option 12), its vendor class
(option 60, e.g. ``MSFT 5.0``, ``android-dhcp-13``) and, once bound, its address (``ciaddr``); a
server's ACK carries the address it gave (``yiaddr``).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from amoskys.collectors.discovery.arp import ETH_P_IP, ethertype

MAGIC = b"\x63\x82\x53\x63"
BOOTREQUEST = 1
BOOTREPLY = 2
#: Option 53 values.
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)

_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s")  # op .. chaddr; then sname(64) file(128) magic(4)
_OPTIONS_AT = _BOOTP.size + 64 + 128
ZERO_IP = b"\x00" * 4


class DhcpInfo(NamedTuple):
    """What one DHCP message tells about its client (empty/zero when it does not say)."""

    op: int
    message_type: int
    client_mac: bytes
    ip: bytes  # the client's address: yiaddr of an ACK, ciaddr of a bound client's message
    hostname: str
    vendor_class: str


def _text(value: bytes) -> str:
    return value.rstrip(b"\x00").decode("utf-8", "replace")[:255]


def parse_frame(frame: bytes) -> DhcpInfo | None:
    """The DHCP message in an Ethernet frame (IPv4/UDP, port 67 or 68), or None when there is none."""
    etype, off = ethertype(frame)
    if etype != ETH_P_IP or len(frame) < off + 20 or frame[off] >> 4 != 4:
        return None
    ihl = (frame[off] & 0x0F) * 4
    if ihl < 20 or frame[off + 9] != 17 or frame[off + 6] & 0x1F or frame[off + 7]:
        return None  # not UDP, or a fragment after the first
    udp = off + ihl
    if len(frame) < udp + 8:
        return None
    sport, dport = struct.unpack_from("!HH", frame, udp)
    if not {sport, dport} & {67, 68}:
        return None
    return parse_bootp(frame[udp + 8 :])


def parse_bootp(payload: bytes) -> DhcpInfo | None:
    """The DHCP message in a UDP payload, or None when it is not BOOTP with the DHCP magic cookie."""
    if len(payload) < _OPTIONS_AT + 4 or payload[_OPTIONS_AT : _OPTIONS_AT + 4] != MAGIC:
        return None
    op, htype, hlen, _hops, _xid, _secs, _flags, ciaddr, yiaddr, _siaddr, _giaddr, chaddr = (
        _BOOTP.unpack_from(payload)
    )
    if op not in (BOOTREQUEST, BOOTREPLY) or htype != 1 or hlen != 6:
        return None
    message_type = 0
    hostname = vendor_class = ""
    i = _OPTIONS_AT + 4
    end = len(payload)
    while i < end:
        code = payload[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 2 > end:
            break
        length = payload[i + 1]
        value = payload[i + 2 : i + 2 + length]
        if len(value) < length:
            break
        if code == 53 and length == 1:
            message_type = value[0]
        elif code == 12:
            hostname = _text(value)
        elif code == 60:
            vendor_class = _text(value)
        i += 2 + length
    # an ACK gives the address; a client's message has one only once bound (a requested address is a wish)
    ip = (yiaddr if message_type == ACK else ZERO_IP) if op == BOOTREPLY else ciaddr
    return DhcpInfo(op, message_type, chaddr[:6], ip, hostname, vendor_class)
