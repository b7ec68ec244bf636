"""The fdb profile against snmpsim serving a recording with BRIDGE-MIB and Q-BRIDGE-MIB forwarding
tables: which port, interface and VLAN each learned MAC is behind, as the collector publishes it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from snmp_agents import SnmpSim, free_udp_port

from amoskys.collectors.snmp.cli import poll_once, to_json
from amoskys.collectors.snmp.config import SnmpConfig, SnmpTargetConfig

pytestmark = pytest.mark.needs_tool  # net-snmp's snmpget (SnmpSim.start waits with it)

RECORDING = Path(__file__).parent / "recordings" / "fdb-switch.snmprec"
COMMUNITY = "fdb-switch"


@pytest.fixture(scope="module")
def fdb_sim(tmp_path_factory: pytest.TempPathFactory, net_snmp_tools: None) -> Iterator[SnmpSim]:
    root = tmp_path_factory.mktemp("snmpsim-fdb")
    (root / "data").mkdir()
    shutil.copy(RECORDING, root / "data" / f"{COMMUNITY}.snmprec")
    agent = SnmpSim(root / "data", [free_udp_port()]).start(COMMUNITY)
    yield agent
    agent.stop()


def _target(port: int) -> SnmpTargetConfig:
    return SnmpTargetConfig(name="access-sw", address="127.0.0.1", port=port, community_env="C_FDB")


async def _poll(port: int, profiles: list[str]):  # type: ignore[no-untyped-def]
    return await poll_once(
        _target(port),
        {"C_FDB": COMMUNITY},
        profiles=profiles,
        timeout_seconds=2,
        retries=1,
        max_repetitions=4,
    )


async def test_fdb_entries_name_port_interface_and_vlan(fdb_sim: SnmpSim) -> None:
    sample = await _poll(fdb_sim.port, ["interfaces", "fdb"])
    assert sample.reachable and sample.fdb_polled, sample.error
    got = [(e.mac.hex(":"), e.port, e.if_index, e.if_name, e.vlan, e.status) for e in sample.fdb]
    assert got == [
        ("3c:2a:f4:a1:b2:c3", 5, 3, "Gi0/3", 10, 3),  # Q-BRIDGE: VLAN 10, bridge port 5 = ifIndex 3
        ("a4:14:37:00:00:07", 1, 1, "Gi0/1", 20, 3),
        ("00:1b:54:00:00:22", 2, 2, "Gi0/2", 0, 3),  # only in BRIDGE-MIB: no VLAN
        ("02:00:00:00:00:ff", 0, 0, "", 0, 4),  # the switch's own address (self)
    ]
    assert [i.name for i in sample.interfaces] == ["Gi0/1", "Gi0/2", "Gi0/3"]
    shown = json.loads(to_json(sample))  # `amoskys snmp poll`'s output: MACs as people write them
    assert shown["fdb_polled"] is True and shown["fdb"][0]["mac"] == "3c:2a:f4:a1:b2:c3"


async def test_without_interfaces_the_port_still_maps_to_its_if_index(fdb_sim: SnmpSim) -> None:
    sample = await _poll(fdb_sim.port, ["fdb"])
    assert sample.fdb_polled and not sample.interfaces
    assert [(e.if_index, e.if_name) for e in sample.fdb][:2] == [(3, ""), (1, "")]


async def test_without_the_profile_nothing_is_walked(fdb_sim: SnmpSim) -> None:
    sample = await _poll(fdb_sim.port, ["interfaces"])
    assert not sample.fdb_polled and not sample.fdb


def test_fdb_is_a_profile_a_target_may_choose() -> None:
    config = msgspec.convert(
        {
            "targets": [
                {
                    "name": "sw",
                    "address": "192.0.2.1",
                    "community_env": "C",
                    "profiles": ["interfaces", "fdb"],
                }
            ]
        },
        SnmpConfig,
    )
    assert config.profiles_of(config.targets[0]) == ["interfaces", "fdb"]
    with pytest.raises(msgspec.ValidationError, match="profiles"):
        msgspec.convert(
            {
                "targets": [
                    {"name": "sw", "address": "192.0.2.1", "community_env": "C", "profiles": ["bridge"]}
                ]
            },
            SnmpConfig,
        )
