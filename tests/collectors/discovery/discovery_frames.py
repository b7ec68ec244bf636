"""Frames for discovery tests, built with struct (a DHCP message with options, ARP), and the OUI file."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from support import require_file

OUI_CSV = Path("/usr/share/ieee-data/oui.csv")


def require_ieee_data() -> Path:
    """Debian's OUI registry; skips when missing (fails under CI=true, which installs it) (needs_tool)."""
    return require_file(OUI_CSV, "ieee-data")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def dhcp_request(
    mac: bytes,
    *,
    hostname: str = "",
    vendor_class: str = "",
    requested_ip: str = "",
    ciaddr: str = "0.0.0.0",
    message_type: int = 3,
    op: int = 1,
    yiaddr: str = "0.0.0.0",
) -> bytes:
    """An Ethernet frame with a DHCP message from `mac` (client port 68 → server port 67, broadcast)."""
    options = bytes([53, 1, message_type])
    if requested_ip:
        options += bytes([50, 4]) + socket.inet_aton(requested_ip)
    if hostname:
        options += bytes([12, len(hostname)]) + hostname.encode()
    if vendor_class:
        options += bytes([60, len(vendor_class)]) + vendor_class.encode()
    options += b"\xff"
    bootp = (
        struct.pack(
            "!BBBBIHH4s4s4s4s16s64s128s4s",
            op,
            1,
            6,
            0,
            0x3903F326,
            0,
            0x8000,
            socket.inet_aton(ciaddr),
            socket.inet_aton(yiaddr),
            b"\x00" * 4,
            b"\x00" * 4,
            mac + b"\x00" * 10,
            b"",
            b"",
            b"\x63\x82\x53\x63",
        )
        + options
    )
    sport, dport = (68, 67) if op == 1 else (67, 68)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(bootp), 0) + bootp
    ip_header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, b"\x00" * 4, b"\xff" * 4
    )
    ip_header = ip_header[:10] + struct.pack("!H", _checksum(ip_header)) + ip_header[12:]
    return b"\xff" * 6 + mac + b"\x08\x00" + ip_header + udp


def arp_frame(op: int, sender_mac: bytes, sender_ip: str, target_mac: bytes, target_ip: str) -> bytes:
    """An Ethernet ARP frame (to broadcast for a request, to `target_mac` for a reply)."""
    dst = b"\xff" * 6 if op == 1 else target_mac
    return (
        dst
        + sender_mac
        + struct.pack(
            "!HHHBBH6s4s6s4s",
            0x0806,
            1,
            0x0800,
            6,
            4,
            op,
            sender_mac,
            socket.inet_aton(sender_ip),
            target_mac,
            socket.inet_aton(target_ip),
        )
    )
