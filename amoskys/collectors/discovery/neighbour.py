"""The appliance's own IPv4 neighbour table (/proc/net/arp), pure parser plus one read."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

PROC_NET_ARP = Path("/proc/net/arp")
ATF_COM = 0x2  # a completed entry (the MAC is known)


class Neighbour(NamedTuple):
    ip: str
    mac: bytes
    interface: str


def parse(text: str) -> list[Neighbour]:
    """The complete entries of a /proc/net/arp text (header skipped; incomplete and bad rows ignored)."""
    out: list[Neighbour] = []
    for line in text.splitlines()[1:]:
        cells = line.split()
        if len(cells) < 6:
            continue
        ip, _hwtype, flags, mac_text, _mask, device = cells[:6]
        try:
            complete = int(flags, 16) & ATF_COM
            mac = bytes.fromhex(mac_text.replace(":", ""))
        except ValueError:
            continue
        if complete and len(mac) == 6 and any(mac):
            out.append(Neighbour(ip, mac, device))
    return out


def read(path: Path = PROC_NET_ARP) -> list[Neighbour]:
    """The complete entries of the neighbour table now; empty where there is no /proc (not Linux)."""
    try:
        return parse(path.read_text())
    except OSError:
        return []
