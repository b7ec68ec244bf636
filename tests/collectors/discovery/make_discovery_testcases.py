"""Write the discovery collector's testcases and, on request, their expected output.

    .venv/bin/python tests/collectors/discovery/make_discovery_testcases.py             # rewrite the inputs
    .venv/bin/python tests/collectors/discovery/make_discovery_testcases.py --expected  # ... and expected.jsonl

Each ``testcases/<case>/`` holds ``input.pcap`` (Ethernet frames built with discovery_frames.py's ARP
and DHCP builders, tagged or damaged here where a case needs it), an optional ``oui.csv`` (the rows
of Debian's ieee-data registry for the vendors the case shows: needs ``ieee-data`` installed), an
optional ``config.toml`` and ``expected.jsonl`` (see discovery_replay.py). expected.jsonl is written
only with ``--expected``: review it in the diff; test_discovery_testcases.py compares, it never
rewrites. Same script, same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent.parent)]  # discovery_replay, discovery_frames, support

from discovery_frames import OUI_CSV, arp_frame, dhcp_request  # noqa: E402
from discovery_replay import APPLIANCE_MAC, CASES_DIR, T0_NS, cases, pcap_bytes, run_case  # noqa: E402

NS = 1_000_000_000
ZERO = b"\0" * 6
ROUTER = bytes.fromhex("f09fc2000001")  # Ubiquiti
PI = bytes.fromhex("b827eb000020")  # Raspberry Pi Foundation
PI4 = bytes.fromhex("dca632000021")  # Raspberry Pi Trading
MACBOOK = bytes.fromhex("3c22fb123456")  # Apple
VM = bytes.fromhex("005056aabbcc")  # VMware
VM2 = bytes.fromhex("005056aabbdd")
NAS = bytes.fromhex("001132001111")  # Synology
PHONE = bytes.fromhex("5a1b2c3d4e5f")  # a randomized (locally administered) MAC
VENDORS = ("F09FC2", "B827EB", "DCA632", "3C22FB", "005056", "001132")

Frames = list[tuple[float, bytes]]


def pad(frame: bytes) -> bytes:
    """As received from the wire: padded to the 60-byte Ethernet minimum (without FCS)."""
    return frame + bytes(max(0, 60 - len(frame)))


def request(sender: bytes, sender_ip: str, target_ip: str) -> bytes:
    return pad(arp_frame(1, sender, sender_ip, ZERO, target_ip))


def reply(sender: bytes, sender_ip: str, target: bytes, target_ip: str) -> bytes:
    return pad(arp_frame(2, sender, sender_ip, target, target_ip))


def tagged(frame: bytes, *tags: tuple[int, int]) -> bytes:
    """`frame` with VLAN tags (TPID, VLAN id) inserted after the MAC addresses, outermost first."""
    return frame[:12] + b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in tags) + frame[12:]


def case_dhcp_lease() -> tuple[Frames, str]:
    """A MacBook's DORA: DISCOVER names it (NEW, no address yet); the server's OFFER and the client's
    REQUEST change nothing; the ACK gives its address (SEEN). A renewal (REQUEST from the bound
    address) is nothing new. A Windows VM (vendor class MSFT 5.0) is renamed (SEEN with the new name);
    a NAS's INFORM carries its address; the router answers ARP. Vendors from the OUI registry."""
    return [
        (0.000, dhcp_request(MACBOOK, hostname="alices-macbook", message_type=1)),
        (0.010, dhcp_request(MACBOOK, op=2, message_type=2, yiaddr="192.168.1.50")),
        (0.020, dhcp_request(MACBOOK, hostname="alices-macbook", requested_ip="192.168.1.50")),
        (0.030, dhcp_request(MACBOOK, op=2, message_type=5, yiaddr="192.168.1.50")),
        (1.000, dhcp_request(VM, hostname="DESKTOP-7Q2K1VQ", vendor_class="MSFT 5.0", message_type=1)),
        (1.010, dhcp_request(VM, op=2, message_type=5, yiaddr="192.168.1.60")),
        (
            2.000,
            dhcp_request(
                NAS, hostname="nas", vendor_class="udhcp 1.32.1", ciaddr="192.168.1.5", message_type=8
            ),
        ),
        (3.000, reply(ROUTER, "192.168.1.1", MACBOOK, "192.168.1.50")),
        (1800.0, dhcp_request(MACBOOK, hostname="alices-macbook", ciaddr="192.168.1.50")),
        (1801.0, dhcp_request(VM, hostname="FINANCE-PC", vendor_class="MSFT 5.0", ciaddr="192.168.1.60")),
    ], '[collectors.discovery]\ninterface = "br-lan"\n'


def case_arp_passive() -> tuple[Frames, str]:
    """ARP as heard on a LAN: a request and its reply (two NEW), our own request (not news), a
    phone's randomized MAC (no vendor, locally administered), an ARP probe from 0.0.0.0 (the MAC
    alone) and its announcement (SEEN with the address), a laptop moving to another address
    (IP_CHANGED) and back (nothing: it had it before), a new MAC answering for a present device's
    address (MAC_CHANGED), a multicast sender (never a device), 802.1Q and QinQ tagged ARP."""
    return [
        (0.0, request(ROUTER, "192.168.1.1", "192.168.1.20")),
        (0.001, reply(PI, "192.168.1.20", ROUTER, "192.168.1.1")),
        (1.0, request(APPLIANCE_MAC, "192.168.1.2", "192.168.1.1")),
        (2.0, request(PHONE, "192.168.1.77", "192.168.1.1")),
        (3.0, request(NAS, "0.0.0.0", "192.168.1.5")),  # RFC 5227 probe
        (5.0, request(NAS, "192.168.1.5", "192.168.1.5")),  # ... and announcement
        (6.0, request(MACBOOK, "192.168.1.30", "192.168.1.1")),
        (7.0, request(MACBOOK, "192.168.1.31", "192.168.1.1")),
        (8.0, request(MACBOOK, "192.168.1.30", "192.168.1.1")),
        (9.0, reply(PI4, "192.168.1.20", ROUTER, "192.168.1.1")),  # another MAC for .20
        (10.0, request(bytes.fromhex("01005e000001"), "192.168.1.99", "192.168.1.1")),
        (11.0, tagged(request(VM, "10.10.0.5", "10.10.0.1"), (0x8100, 10))),
        (12.0, tagged(request(VM2, "10.20.0.5", "10.20.0.1"), (0x88A8, 100), (0x8100, 20))),
    ], '[collectors.discovery]\ninterface = "br-lan"\n'


def case_gone_and_back() -> tuple[Frames, str]:
    """With gone_after_seconds = 60 (config.toml): the Pi, unheard for 60 s, is GONE when the next
    frame arrives; heard again it is SEEN (present once more); the MacBook goes the same way later."""
    return [
        (0.0, request(PI, "192.168.1.20", "192.168.1.1")),
        (10.0, request(MACBOOK, "192.168.1.30", "192.168.1.1")),
        (50.0, request(MACBOOK, "192.168.1.30", "192.168.1.1")),
        (65.0, request(MACBOOK, "192.168.1.30", "192.168.1.1")),
        (80.0, reply(PI, "192.168.1.20", MACBOOK, "192.168.1.30")),
        (200.0, request(PI, "192.168.1.20", "192.168.1.1")),
    ], "[collectors.discovery]\ngone_after_seconds = 60.0\n"


def case_malformed_frames() -> tuple[Frames, str]:
    """Frames that are not what they claim are skipped without an event: empty, cut inside the
    Ethernet header or the VLAN tag, ARP cut short or not for IPv4 over Ethernet, an IP header length
    under 20, a DHCP message in a later fragment, UDP to another port, BOOTP without the DHCP cookie,
    a hardware type other than Ethernet, and random bytes. A DHCP message whose options end inside
    the host name still tells its MAC (the options before the cut count); a multicast client MAC is
    parsed but never a device."""
    good_arp = request(PI, "192.168.1.20", "192.168.1.1")
    not_ipv4 = bytearray(good_arp)
    struct.pack_into("!H", not_ipv4, 16, 0x86DD)  # protocol type IPv6
    good_dhcp = dhcp_request(VM, hostname="DESKTOP-7Q2K1VQ", message_type=1)
    ihl_short = bytearray(good_dhcp)
    ihl_short[14] = 0x44  # IHL 4: 16 bytes
    fragment = bytearray(good_dhcp)
    struct.pack_into("!H", fragment, 20, 185)  # fragment offset 185 × 8 bytes
    other_port = bytearray(good_dhcp)
    struct.pack_into("!HH", other_port, 34, 5353, 53)
    no_cookie = bytearray(good_dhcp)
    no_cookie[42 + 236 : 42 + 240] = b"\0\0\0\0"
    not_ethernet = bytearray(good_dhcp)
    not_ethernet[42 + 1] = 6  # htype IEEE 802
    cut_options = dhcp_request(NAS, hostname="synology-ds220", message_type=1)
    cut_options = cut_options[: len(cut_options) - 10]  # inside option 12 (the host name)
    multicast_client = dhcp_request(bytes.fromhex("010203040506"), hostname="odd", message_type=1)
    return [
        (0.0, b""),
        (0.1, good_arp[:10]),
        (0.2, tagged(good_arp, (0x8100, 5))[:16]),
        (0.3, good_arp[:30]),
        (0.4, bytes(not_ipv4)),
        (0.5, bytes(ihl_short)),
        (0.6, bytes(fragment)),
        (0.7, bytes(other_port)),
        (0.8, bytes(no_cookie)),
        (0.9, bytes(not_ethernet)),
        (1.0, random.Random(7).randbytes(64)),
        (1.1, cut_options),
        (1.2, multicast_client),
        (1.3, good_arp),
    ], ""


CASES: dict[str, tuple[Callable[[], tuple[Frames, str]], bool]] = {
    # name: (frames and config.toml, whether it has an oui.csv)
    "dhcp_lease": (case_dhcp_lease, True),
    "arp_passive": (case_arp_passive, True),
    "gone_and_back": (case_gone_and_back, False),
    "malformed_frames": (case_malformed_frames, False),
}


def oui_rows() -> str:
    """The header and the rows of the registry for VENDORS, as ieee-data ships them."""
    if not OUI_CSV.is_file():
        raise SystemExit(f"needs {OUI_CSV}: sudo apt-get install -y ieee-data")
    lines = OUI_CSV.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [line for line in lines[1:] if line.split(",", 2)[1:2] and line.split(",", 2)[1] in VENDORS]
    if len(rows) != len(VENDORS):
        raise SystemExit(f"{OUI_CSV} lacks some of {VENDORS}")
    return lines[0] + "".join(sorted(rows, key=lambda row: row.split(",", 2)[1]))


def write_case(name: str) -> None:
    make, with_oui = CASES[name]
    frames, config = make()
    folder = CASES_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "input.pcap").write_bytes(pcap_bytes([(T0_NS + round(t * NS), f) for t, f in frames]))
    for path, text in (
        (folder / "oui.csv", oui_rows() if with_oui else ""),
        (folder / "config.toml", config),
    ):
        if text:
            path.write_text(text, encoding="utf-8")
        elif path.exists():
            path.unlink()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--expected", action="store_true", help="also rewrite every case's expected.jsonl")
    args = p.parse_args(argv)
    for name in CASES:
        write_case(name)
    for name in cases():  # also captures added by hand, not written here
        if args.expected:
            (CASES_DIR / name / "expected.jsonl").write_text(asyncio.run(run_case(name)), encoding="utf-8")
        print(f"{name}: " + ("expected.jsonl written" if args.expected else "input written"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
