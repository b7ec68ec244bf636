"""The inventory's change rules: new, ip-changed, mac-changed, gone, seen."""

from __future__ import annotations

from amoskys.collectors.discovery.inventory import ARP_SWEEP, DHCP, Inventory
from amoskys.collectors.discovery.oui import OuiRegistry
from amoskys.proto import events_pb2

D = events_pb2.DeviceEvent
NS = 1_000_000_000
A = bytes.fromhex("b827eb000001")
B = bytes.fromhex("b827eb000002")
RANDOM = bytes.fromhex("da0000000003")


def inventory() -> Inventory:
    return Inventory(
        OuiRegistry({24: {0xB827EB: "Raspberry Pi Foundation"}}), gone_after_ns=60 * NS, interface="br0"
    )


def changes(events: list[events_pb2.Envelope]) -> list[int]:
    return [e.device.change for e in events]


def test_a_new_mac_is_new_with_its_vendor_and_how_it_was_seen() -> None:
    inv = inventory()
    [event] = inv.observe(1 * NS, A, ARP_SWEEP, ip="10.0.0.11")
    d = event.device
    assert d.change == D.NEW and d.ip == "10.0.0.11" and d.mac == A and d.vendor == "Raspberry Pi Foundation"
    assert list(d.seen_by) == ["arp_sweep"] and d.interface == "br0" and not d.mac_locally_administered
    assert d.first_seen_ns == d.last_seen_ns == 1 * NS
    assert inv.observe(2 * NS, A, ARP_SWEEP, ip="10.0.0.11") == []  # nothing new: no event


def test_a_known_mac_on_a_new_address_is_ip_changed_but_going_back_is_not() -> None:
    inv = inventory()
    inv.observe(1 * NS, A, ARP_SWEEP, ip="10.0.0.11")
    [event] = inv.observe(2 * NS, A, ARP_SWEEP, ip="10.0.0.21")
    assert event.device.change == D.IP_CHANGED
    assert (event.device.ip, event.device.previous_ip) == ("10.0.0.21", "10.0.0.11")
    assert inv.observe(3 * NS, A, ARP_SWEEP, ip="10.0.0.11") == []


def test_a_new_mac_on_a_present_devices_address_is_mac_changed() -> None:
    inv = inventory()
    inv.observe(1 * NS, A, ARP_SWEEP, ip="10.0.0.11")
    [event] = inv.observe(2 * NS, B, ARP_SWEEP, ip="10.0.0.11")
    assert event.device.change == D.MAC_CHANGED and event.device.mac == B and event.device.previous_mac == A


def test_an_absent_device_is_gone_once_and_seen_when_it_returns() -> None:
    inv = inventory()
    inv.observe(1 * NS, A, ARP_SWEEP, ip="10.0.0.11")
    assert inv.expire(60 * NS) == []
    [gone] = inv.expire(61 * NS)
    assert gone.device.change == D.GONE and gone.device.last_seen_ns == 1 * NS
    assert inv.expire(200 * NS) == []
    assert changes(inv.observe(300 * NS, A, ARP_SWEEP, ip="10.0.0.11")) == [D.SEEN]


def test_a_hostname_learned_from_dhcp_is_a_seen_event_and_random_macs_are_flagged() -> None:
    inv = inventory()
    [new] = inv.observe(1 * NS, RANDOM, DHCP, hostname="phone", vendor_class="android-dhcp-14")
    assert new.device.mac_locally_administered and new.device.vendor == "" and new.device.ip == ""
    assert new.device.hostname == "phone" and new.device.dhcp_vendor_class == "android-dhcp-14"
    [seen] = inv.observe(2 * NS, RANDOM, ARP_SWEEP, ip="10.0.0.30")
    assert seen.device.change == D.SEEN and seen.device.ip == "10.0.0.30"
    assert sorted(seen.device.seen_by) == ["arp_sweep", "dhcp"]


def test_group_and_zero_macs_are_never_devices() -> None:
    inv = inventory()
    assert (
        inv.observe(1, b"\xff" * 6, ARP_SWEEP) == []
        and inv.observe(1, b"\x01\x00\x5e\0\0\1", ARP_SWEEP) == []
    )
    assert inv.observe(1, b"\0" * 6, ARP_SWEEP) == [] and len(inv) == 0


def test_refresh_reports_devices_seen_since_their_last_event_at_most_once_per_interval() -> None:
    inv = inventory()
    inv.observe(1 * NS, A, ARP_SWEEP, ip="10.0.0.11")
    inv.observe(5 * NS, A, ARP_SWEEP, ip="10.0.0.11")
    assert inv.refresh(6 * NS, 10 * NS) == []
    [seen] = inv.refresh(11 * NS, 10 * NS)
    assert seen.device.change == D.SEEN and seen.device.last_seen_ns == 5 * NS
    assert inv.refresh(30 * NS, 10 * NS) == []  # not seen since


def test_a_device_gone_long_enough_is_forgotten_and_new_when_it_returns() -> None:
    inv = inventory()
    inv.observe(1 * NS, A, ARP_SWEEP, ip="10.0.0.11")
    inv.observe(1 * NS, B, ARP_SWEEP, ip="10.0.0.12")
    inv.observe(500 * NS, B, ARP_SWEEP, ip="10.0.0.12")
    inv.expire(100 * NS)
    assert inv.forget(1000 * NS, 1000 * NS) == 0
    assert inv.forget(1001 * NS, 1000 * NS) == 1 and list(inv.devices) == [B]  # B is present
    assert changes(inv.observe(1002 * NS, A, ARP_SWEEP, ip="10.0.0.11")) == [D.NEW]
