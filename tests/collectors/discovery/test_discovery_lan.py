"""The collector on a real LAN: five hosts in network namespaces on a bridge (made and removed here).

The sweep finds exactly them, with their MACs and vendors, and agrees with arp-scan; a host that
moves is IP_CHANGED; a host that leaves is GONE after the absence (a FakeClock moves time).
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
from pathlib import Path

import pytest

from amoskys.collectors.clock import FakeClock
from amoskys.collectors.discovery.config import DiscoveryConfig
from amoskys.proto import events_pb2

from discovery_frames import require_ieee_data
from discovery_harness import devices, make
from discovery_lan import lan, require_lan_rig
from support import eventually, require_tool

D = events_pb2.DeviceEvent

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tool]  # a LAN in network namespaces

#: MACs with real OUIs, and the vendor Debian's ieee-data gives each.
HOSTS = [
    ("b8:27:eb:00:00:11", 11, "Raspberry Pi Foundation"),
    ("00:1b:63:00:00:12", 12, "Apple, Inc."),
    ("f4:f5:d8:00:00:13", 13, "Google, Inc."),
    ("00:16:3e:00:00:14", 14, "Xensource, Inc."),
    ("3c:5a:b4:00:00:15", 15, "Google, Inc."),
]


def arp_scan(interface: str, subnet: str) -> dict[str, str]:
    """What Debian's arp-scan finds: ip → mac."""
    out = subprocess.run(
        ["arp-scan", "-q", "-x", "-I", interface, "--retry=2", subnet],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) >= 2:
            found[cells[0]] = cells[1].lower()
    return found


async def test_the_sweep_finds_exactly_the_hosts_follows_a_move_and_reports_one_that_left(
    tmp_path: Path,
) -> None:
    require_lan_rig()
    require_tool("arp-scan", "arp-scan")
    oui_file = require_ieee_data()
    with lan() as net:
        hosts = [net.add_host(mac, octet) for mac, octet, _ in HOSTS]
        config = DiscoveryConfig(
            interface=net.bridge,
            subnets=[net.subnet],
            rate_packets_per_second=2000,
            retries=1,
            reply_timeout_seconds=0.3,
            gone_after_seconds=600,
            oui_file=str(oui_file),
        )
        clock = FakeClock()
        collector, sink = make(tmp_path, config, clock=clock)
        assert collector.self_check() is None
        await collector.start()
        try:
            found = await collector.sweep_once()
            expected = {h.ip: h.mac for h in hosts}
            got = {str(ipaddress.IPv4Address(k)): v.hex(":") for k, v in found.items()}
            assert got == expected
            new = {d.ip: d for d in devices(sink, D.NEW)}
            assert set(new) == set(expected)
            for mac, octet, vendor in HOSTS:
                d = new[net.prefix + str(octet)]
                assert (d.mac.hex(":"), d.vendor, d.interface) == (mac, vendor, net.bridge)
                assert "arp_sweep" in d.seen_by and not d.mac_locally_administered
            assert collector._m_replies._value.get() == 5
            # 253 addresses asked (the bridge's own skipped), the 248 silent ones once more
            assert collector._m_requests._value.get() == 253 + 248

            assert arp_scan(net.bridge, net.subnet) == got

            sink.clear()
            net.set_ip(hosts[0], 31)
            clock.advance(60)
            await collector.sweep_once()
            changed = devices(sink, D.IP_CHANGED)
            assert len(changed) == 1, [(d.ip, d.previous_ip, d.seen_by, d.interface) for d in sink_all(sink)]
            [moved] = changed
            assert (moved.mac.hex(":"), moved.ip, moved.previous_ip) == (
                hosts[0].mac,
                net.prefix + "31",
                net.prefix + "11",
            )

            sink.clear()
            net.remove(hosts[4])
            clock.advance(300)
            await collector.sweep_once()
            assert devices(sink, D.GONE) == []  # absent 300 s of 600
            clock.advance(301)
            await collector.sweep_once()
            gone_list = devices(sink, D.GONE)
            assert len(gone_list) == 1, [(d.change, d.ip, d.seen_by, d.interface) for d in sink_all(sink)]
            [gone] = gone_list
            assert gone.mac.hex(":") == hosts[4].mac and gone.ip == hosts[4].ip
            assert len(collector.inventory.present()) == 4
        finally:
            collector.stop()


async def test_run_publishes_new_devices_and_stops_cleanly(tmp_path: Path) -> None:
    require_lan_rig()
    with lan() as net:
        net.add_host("b8:27:eb:00:00:21", 21)
        config = DiscoveryConfig(
            interface=net.bridge,
            subnets=[net.subnet],
            rate_packets_per_second=5000,
            retries=0,
            reply_timeout_seconds=0.2,
        )
        collector, sink = make(tmp_path, config)
        task = asyncio.create_task(collector.run())
        try:
            await eventually(
                lambda: [d for d in devices(sink, D.NEW) if d.interface == net.bridge], within=15, what="NEW"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # (the neighbour table may add devices of other interfaces of this machine)
        assert [d.ip for d in devices(sink, D.NEW) if d.interface == net.bridge] == [net.prefix + "21"]
        assert collector.port._sock is None  # closed on the way out


def sink_all(sink):  # type: ignore[no-untyped-def]
    return [e.device for e in sink if e.WhichOneof("body") == "device"]
