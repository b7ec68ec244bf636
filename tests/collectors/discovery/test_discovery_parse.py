"""The pure parts: ARP and DHCP parsers, the neighbour table, the OUI registry (Debian's ieee-data)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amoskys.collectors.discovery import arp, dhcp, neighbour
from amoskys.collectors.discovery.oui import OuiRegistry, locally_administered

from discovery_frames import arp_frame, dhcp_request, require_ieee_data

MAC = bytes.fromhex("b827eb123456")


def test_a_built_request_parses_back_and_is_padded_to_the_ethernet_minimum() -> None:
    frame = arp.build_request(MAC, socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.9"))
    assert len(frame) == 60 and frame[:6] == arp.BROADCAST
    packet = arp.parse_frame(frame)
    assert packet == arp.ArpPacket(
        arp.REQUEST, MAC, socket.inet_aton("10.0.0.1"), arp.ZERO_MAC, socket.inet_aton("10.0.0.9")
    )


def test_a_vlan_tagged_arp_reply_is_parsed() -> None:
    frame = arp_frame(2, MAC, "10.0.0.9", b"\x02" * 6, "10.0.0.1")
    tagged = frame[:12] + b"\x81\x00\x00\x0a" + frame[12:]
    packet = arp.parse_frame(tagged)
    assert packet is not None and packet.op == arp.REPLY and packet.sender_ip == socket.inet_aton("10.0.0.9")


def test_a_dhcp_request_gives_the_client_mac_hostname_and_vendor_class() -> None:
    frame = dhcp_request(MAC, hostname="kitchen-pi", vendor_class="udhcp 1.36.1", requested_ip="10.0.0.50")
    info = dhcp.parse_frame(frame)
    assert info is not None
    assert (info.client_mac, info.hostname, info.vendor_class) == (MAC, "kitchen-pi", "udhcp 1.36.1")
    assert info.message_type == dhcp.REQUEST and info.ip == b"\x00" * 4  # a requested address is a wish


def test_a_dhcp_ack_gives_the_address_it_hands_out() -> None:
    frame = dhcp_request(MAC, op=2, message_type=dhcp.ACK, yiaddr="10.0.0.50")
    info = dhcp.parse_frame(frame)
    assert info is not None and info.ip == socket.inet_aton("10.0.0.50") and info.op == dhcp.BOOTREPLY


def test_frames_that_are_not_dhcp_are_none() -> None:
    assert dhcp.parse_frame(arp.build_request(MAC, b"\0" * 4, b"\1" * 4)) is None
    frame = dhcp_request(MAC)
    assert dhcp.parse_frame(frame[:100]) is None


@given(st.binary(max_size=600))
def test_parsers_never_crash_on_arbitrary_bytes(data: bytes) -> None:
    arp.parse_frame(data)
    dhcp.parse_frame(data)
    dhcp.parse_bootp(data)


@given(st.binary(min_size=236, max_size=400))
def test_the_dhcp_option_walker_never_crashes(tail: bytes) -> None:
    frame = dhcp_request(MAC, hostname="x")
    dhcp.parse_frame(frame[: 14 + 20 + 8 + 240] + tail)


def test_the_neighbour_table_keeps_complete_entries_only() -> None:
    text = (
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "192.168.1.1      0x1         0x2         b8:27:eb:12:34:56     *        eth0\n"
        "192.168.1.7      0x1         0x0         00:00:00:00:00:00     *        eth0\n"
        "garbage\n"
    )
    assert neighbour.parse(text) == [neighbour.Neighbour("192.168.1.1", MAC, "eth0")]


def test_locally_administered_macs_are_flagged_and_have_no_vendor() -> None:
    registry = OuiRegistry({24: {0x02AABB: "Nobody"}})
    mac = bytes.fromhex("02aabb000001")
    assert locally_administered(mac) and registry.vendor(mac) == ""
    assert not locally_administered(MAC)


def test_the_longest_registered_prefix_wins() -> None:
    registry = OuiRegistry({24: {0x001BC5: "Large block"}, 36: {0x001BC5001: "Small block"}})
    assert registry.vendor(bytes.fromhex("001bc5001234")) == "Small block"
    assert registry.vendor(bytes.fromhex("001bc5abcdef")) == "Large block"
    assert registry.vendor(bytes.fromhex("0000aa000000")) == ""


@pytest.mark.needs_tool
def test_vendors_come_from_debians_ieee_data() -> None:
    require_ieee_data()
    registry = OuiRegistry.load(require_ieee_data())
    assert len(registry) > 30_000
    assert registry.vendor(MAC) == "Raspberry Pi Foundation"
    assert registry.vendor(bytes.fromhex("001b63000001")) == "Apple, Inc."


def test_a_missing_registry_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        OuiRegistry.load(tmp_path / "oui.csv")
