"""New devices and MAC changes on a real LAN, and an interface set down under a real snmpd: discovery
sweeping hosts in network namespaces behind a bridge, and the SNMP collector polling net-snmp's snmpd,
publish into the bus; the built-in detectors raise their alerts from what they publish."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from snmp_agents import SnmpDaemon, free_udp_port

from amoskys.collectors.clock import SystemClock
from amoskys.collectors.discovery.collector import DiscoveryCollector
from amoskys.collectors.discovery.config import DiscoveryConfig
from amoskys.collectors.snmp.collector import SnmpCollector
from amoskys.collectors.snmp.config import SnmpConfig, SnmpTargetConfig
from amoskys.proto import events_pb2 as ev

from .harness import Running, builtin
from discovery_lan import lan, require_lan_rig
from support import eventually, make_context, require_root, require_tool

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tool]

MAC_A, MAC_B = "02:aa:00:00:00:21", "02:bb:00:00:00:21"


async def test_a_device_appearing_is_new_and_another_mac_taking_its_address_is_a_mac_change(
    tmp_path: Path,
) -> None:
    require_lan_rig()
    with lan() as net:
        first = net.add_host(MAC_A, 21)
        async with builtin(tmp_path) as d:
            config = DiscoveryConfig(
                interface=net.bridge, subnets=[net.subnet], rate_packets_per_second=5000, retries=0,
                reply_timeout_seconds=0.2, passive="off",
            )  # fmt: skip
            ctx = make_context(
                "discovery", tmp_path, publish=d.bus.publish, stamper=d.stamper, clock=SystemClock()
            )
            collector = DiscoveryCollector(config, ctx)
            await collector.start()
            try:
                await collector.sweep_once()
                new = await eventually(
                    lambda: _alerts_for(d, "amoskys.new_device", first.ip), what="new device"
                )
                net.remove(first)  # another machine answers for its address, while it still counts as present
                net.add_host(MAC_B, 21)
                await collector.sweep_once()
                moved = await eventually(
                    lambda: _alerts_for(d, "amoskys.mac_change", first.ip), what="MAC change"
                )
            finally:
                collector.stop()
    a = json.loads(new[0]["attributes"])
    assert a["mac"] == MAC_A and a["interface"] == net.bridge and new[0]["level"] == "low"
    m = json.loads(moved[0]["attributes"])
    assert (m["previous_mac"], m["mac"]) == (MAC_A, MAC_B) and moved[0]["level"] == "high"


async def _alerts_for(d: Running, rule_id: str, ip: str) -> list[dict[str, object]]:
    return [r for r in await d.alerts(rule_id) if json.loads(str(r["attributes"])).get("ip") == ip]


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


async def test_an_interface_set_down_and_snmpd_stopping_raise_snmp_alerts(tmp_path: Path) -> None:
    require_tool("snmpd", "snmpd")
    require_tool("ip", "iproute2")
    require_root("the test makes a veth pair for snmpd to report")
    tag = uuid.uuid4().hex[:6]
    up, peer = f"ams{tag}a", f"ams{tag}b"
    await asyncio.to_thread(_ip, "link", "add", up, "type", "veth", "peer", "name", peer)
    snmpd = SnmpDaemon(tmp_path / "snmpd", free_udp_port())
    try:
        for end in (up, peer):
            await asyncio.to_thread(_ip, "link", "set", end, "up")
        await asyncio.to_thread(snmpd.start)
        community = tmp_path / "community"
        community.write_text(snmpd.community + "\n")
        community.chmod(0o600)
        target = SnmpTargetConfig(
            name="lab", address="127.0.0.1", port=snmpd.port, community_file=str(community)
        )
        config = SnmpConfig(
            interval_seconds=1, deadline_seconds=0.9, timeout_seconds=0.3, retries=0, backoff_max_seconds=1,
            targets=[target],
        )  # fmt: skip
        async with builtin(tmp_path) as d:
            ctx = make_context(
                "snmp", tmp_path, publish=d.bus.publish, stamper=d.stamper, clock=SystemClock()
            )
            task = asyncio.create_task(SnmpCollector(config, ctx, environ={}).run())
            try:
                await eventually(lambda: _is_up(d, up), within=30, what=f"snmpd to report {up} up")
                await asyncio.to_thread(_ip, "link", "set", up, "down")
                # both ends go down
                [down] = await eventually(lambda: _if_down(d, {up, peer}), within=30, what="interface-down")
                await asyncio.to_thread(snmpd.stop)
                [gone] = await eventually(
                    lambda: d.alerts("amoskys.snmp_unreachable"), within=15, what="unreachable"
                )
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await asyncio.to_thread(snmpd.stop)
        await asyncio.to_thread(_ip, "link", "del", up, check=False)
    assert json.loads(down["attributes"])["oper_status"] == "down" and down["level"] == "medium"
    # one sample saw both ends go down (one finding naming both), or two did (two counted on the alert)
    both = (
        f"interface {up} of lab went down" in down["summary"]
        and f"interface {peer} of lab" in down["summary"]
    )
    assert both or down["count"] == 2, (down["summary"], down["count"])
    assert json.loads(gone["attributes"])["target"] == "lab" and "stopped answering" in gone["summary"]


async def _oper(d: Running, name: str) -> int:
    """ifOperStatus of interface `name` in the newest stored SNMP sample (0: not in it)."""

    def read() -> int:
        conn = sqlite3.connect(f"file:{d.db}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT envelope FROM events WHERE kind = 'snmp' ORDER BY store_seq DESC LIMIT 1"
            ).fetchone()
        finally:
            conn.close()
        if row is None:
            return 0
        sample = ev.Envelope.FromString(row[0]).snmp
        return next((int(i.oper_status) for i in sample.interfaces if name in (i.name, i.descr)), 0)

    return await asyncio.to_thread(read)


async def _is_up(d: Running, name: str) -> bool:
    return await _oper(d, name) == 1


async def _if_down(d: Running, names: set[str]) -> list[dict[str, object]]:
    return [
        r
        for r in await d.alerts("amoskys.snmp_if_down")
        if json.loads(str(r["attributes"]))["interface"] in names
    ]
