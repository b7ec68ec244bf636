"""The device inventory: devices by MAC, what changed, and the DeviceEvents that say so.

Rules (each observation is a MAC, maybe an IPv4 address, and how it was seen):
- an unknown MAC is ``NEW``; if its address belonged to another present MAC, it is ``MAC_CHANGED``
  instead, with ``previous_mac`` (a replaced device, or someone answering for another's address);
- a known MAC with an address it never had before is ``IP_CHANGED`` with ``previous_ip`` (an address
  it had before becomes its current one again without an event: hosts with several addresses do
  not flap);
- a device absent for ``gone_after`` is ``GONE``; seen again, it is ``SEEN`` (present once more);
- a newly learned host name, DHCP vendor class or open-port list, and a refresh of a device not
  reported for a while, are ``SEEN`` (the store's devices view keeps last_seen current).
Group and broadcast MACs are never devices. A device gone long enough is forgotten (``forget``): seen
again, it is ``NEW``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from amoskys.collectors.discovery.oui import OuiRegistry, locally_administered
from amoskys.proto import events_pb2

Change = events_pb2.DeviceEvent
ARP_SWEEP, ARP_PASSIVE, DHCP, NEIGHBOUR_TABLE, TCP_PROBE = (
    "arp_sweep",
    "arp_passive",
    "dhcp",
    "neighbour_table",
    "tcp_probe",
)


@dataclass
class Device:
    """What the inventory knows of one MAC."""

    mac: bytes
    vendor: str
    first_seen_ns: int
    last_seen_ns: int
    ip: str = ""
    ips: set[str] = field(default_factory=set)
    hostname: str = ""
    vendor_class: str = ""
    interface: str = ""
    seen_by: set[str] = field(default_factory=set)
    open_tcp_ports: tuple[int, ...] = ()
    present: bool = True
    reported_ns: int = 0  # when the last event about it was built

    @property
    def locally_administered(self) -> bool:
        return locally_administered(self.mac)


class Inventory:
    """Devices by MAC and addresses by owner; ``observe``/``expire`` return the events to publish."""

    def __init__(self, oui: OuiRegistry, *, gone_after_ns: int, interface: str = "") -> None:
        self.oui = oui
        self.gone_after_ns = gone_after_ns
        self.interface = interface
        self.devices: dict[bytes, Device] = {}
        self._owner: dict[str, bytes] = {}  # ip → the MAC that has it now

    def __len__(self) -> int:
        return len(self.devices)

    def present(self) -> list[Device]:
        return [d for d in self.devices.values() if d.present]

    def observe(
        self,
        ts_ns: int,
        mac: bytes,
        how: str,
        *,
        ip: str = "",
        hostname: str = "",
        vendor_class: str = "",
        interface: str = "",
    ) -> list[events_pb2.Envelope]:
        """Record that `mac` (with `ip`, when known) was seen at `ts_ns` by `how`; the events it causes."""
        if len(mac) != 6 or mac[0] & 1 or not any(mac):
            return []
        if ip == "0.0.0.0":
            ip = ""
        events: list[events_pb2.Envelope] = []
        device = self.devices.get(mac)
        previous_owner = self._owner.get(ip) if ip else None
        if device is None:
            device = self.devices[mac] = Device(mac, self.oui.vendor(mac), ts_ns, ts_ns)
            device.interface = interface or self.interface
            self._learn(device, how, ip, hostname, vendor_class, ts_ns)
            other = self.devices.get(previous_owner) if previous_owner else None
            if other is not None and other.present and other.mac != mac:
                other.ips.discard(ip)
                events.append(self._event(device, Change.MAC_CHANGED, ts_ns, previous_mac=other.mac))
            else:
                events.append(self._event(device, Change.NEW, ts_ns))
            return events
        was_present = device.present
        old_ip, old_hostname, old_class = device.ip, device.hostname, device.vendor_class
        fresh_ip = bool(ip) and ip not in device.ips
        self._learn(device, how, ip, hostname, vendor_class, ts_ns)
        if interface and not device.interface:
            device.interface = interface
        if fresh_ip and old_ip:
            events.append(self._event(device, Change.IP_CHANGED, ts_ns, previous_ip=old_ip))
        elif (
            not was_present
            or (ip and not old_ip)
            or device.hostname != old_hostname
            or device.vendor_class != old_class
        ):
            events.append(self._event(device, Change.SEEN, ts_ns))
        return events

    def _learn(self, device: Device, how: str, ip: str, hostname: str, vendor_class: str, ts_ns: int) -> None:
        device.last_seen_ns = max(device.last_seen_ns, ts_ns)
        device.present = True
        device.seen_by.add(how)
        if hostname:
            device.hostname = hostname
        if vendor_class:
            device.vendor_class = vendor_class
        if ip:
            device.ips.add(ip)
            device.ip = ip
            self._owner[ip] = device.mac

    def set_open_ports(self, mac: bytes, ports: Iterable[int], ts_ns: int) -> list[events_pb2.Envelope]:
        """Record a TCP probe's result; a SEEN event carries it."""
        device = self.devices.get(mac)
        if device is None:
            return []
        device.open_tcp_ports = tuple(sorted(set(ports)))
        device.seen_by.add(TCP_PROBE)
        return [self._event(device, Change.SEEN, ts_ns)]

    def expire(self, now_ns: int) -> list[events_pb2.Envelope]:
        """GONE for every present device not seen for `gone_after_ns`."""
        events = []
        for device in self.devices.values():
            if device.present and now_ns - device.last_seen_ns >= self.gone_after_ns:
                device.present = False
                for ip in device.ips:
                    if self._owner.get(ip) == device.mac:
                        del self._owner[ip]
                events.append(self._event(device, Change.GONE, now_ns))
        return events

    def forget(self, now_ns: int, after_ns: int) -> int:
        """Drop devices gone and unseen for `after_ns` (randomized MACs would pile up); how many."""
        old = [
            mac for mac, d in self.devices.items() if not d.present and now_ns - d.last_seen_ns >= after_ns
        ]
        for mac in old:
            del self.devices[mac]
        return len(old)

    def refresh(self, now_ns: int, every_ns: int) -> list[events_pb2.Envelope]:
        """SEEN for present devices seen since their last event, when that event is `every_ns` old."""
        return [
            self._event(d, Change.SEEN, now_ns)
            for d in self.devices.values()
            if d.present and d.last_seen_ns > d.reported_ns and now_ns - d.reported_ns >= every_ns
        ]

    def _event(
        self,
        device: Device,
        change: events_pb2.DeviceEvent.Change,
        ts_ns: int,
        *,
        previous_ip: str = "",
        previous_mac: bytes = b"",
    ) -> events_pb2.Envelope:
        device.reported_ns = ts_ns
        envelope = events_pb2.Envelope(ts_ns=ts_ns)
        body = envelope.device
        body.change = change
        body.ip = device.ip
        body.mac = device.mac
        body.vendor = device.vendor
        body.hostname = device.hostname
        body.seen_by.extend(sorted(device.seen_by))
        body.previous_ip = previous_ip
        body.previous_mac = previous_mac
        body.mac_locally_administered = device.locally_administered
        body.interface = device.interface
        body.first_seen_ns = device.first_seen_ns
        body.last_seen_ns = device.last_seen_ns
        body.dhcp_vendor_class = device.vendor_class
        body.open_tcp_ports.extend(device.open_tcp_ports)
        return envelope
