"""Passive DHCP through the flow collector's live capture: a DHCP REQUEST with a host name, sent by a
host in a network namespace, reaches the discovery inventory through PacketTaps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from amoskys.collectors.clock import SystemClock
from amoskys.collectors.discovery.config import DiscoveryConfig
from amoskys.collectors.flow.collector import FlowCollector
from amoskys.collectors.flow.config import FlowConfig
from amoskys.collectors.taps import PacketTaps

from discovery_frames import dhcp_request
from discovery_harness import devices, make
from discovery_lan import lan, require_lan_rig
from support import make_context

MAC = "b8:27:eb:00:00:41"

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tool]  # a LAN in network namespaces


def flow_collector(tmp_path: Path, interface: str, taps: PacketTaps) -> FlowCollector:
    ctx = make_context("flow", tmp_path, clock=SystemClock(), packet_taps=taps)
    return FlowCollector(FlowConfig(interface=interface), ctx)


async def test_a_dhcp_request_on_the_capture_interface_yields_the_hostname(tmp_path: Path) -> None:
    require_lan_rig()
    with lan() as net:
        host = net.add_host(MAC, 41)
        taps = PacketTaps()
        # as in the appliance: both contexts hold the one PacketTaps; the flow collector connects to it
        flow = flow_collector(tmp_path, net.bridge, taps)
        discovery, sink = make(tmp_path, DiscoveryConfig(interface=net.bridge), taps=taps)
        tasks = [asyncio.create_task(flow.run()), asyncio.create_task(discovery.run())]
        frame = dhcp_request(
            bytes.fromhex(MAC.replace(":", "")), hostname="kitchen-pi", vendor_class="udhcp 1.36.1"
        )
        try:
            async with asyncio.timeout(15):
                while not [d for d in devices(sink) if d.hostname]:
                    # resent until seen: the capture may still be opening when the first one leaves
                    await asyncio.to_thread(net.send, host, frame)
                    await asyncio.sleep(0.2)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert taps.captures == 0  # the stopped flow collector disconnected
        [named] = [d for d in devices(sink) if d.hostname]
        assert (named.mac.hex(":"), named.hostname, named.dhcp_vendor_class) == (
            MAC,
            "kitchen-pi",
            "udhcp 1.36.1",
        )
        assert "dhcp" in named.seen_by
