"""Fixtures of the SNMP collector tests: real agents on free ports, and the collector under a harness."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from snmp_agents import RECORDED, SnmpDaemon, SnmpSim, device_snmprec, free_udp_port
from snmp_harness import Harness

from support import require_tool

#: Devices every snmpsim of these tests serves (community = name).
SIM_DEVICES = {
    "switch24": lambda: device_snmprec("switch24", 24, octets_per_second=1000),
    "legacy4": lambda: device_snmprec("legacy4", 4, hc=False, octets_per_second=1000),
}


@pytest.fixture(scope="session")
def net_snmp_tools() -> None:
    require_tool("snmpd", "snmpd")
    require_tool("snmpget", "snmp")
    require_tool("snmpbulkwalk", "snmp")


def sim_data_dir(root: Path) -> Path:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(RECORDED / "linux-full-walk.snmprec", data / "linux-full-walk.snmprec")
    for name, text in SIM_DEVICES.items():
        (data / f"{name}.snmprec").write_text(text())
    return data


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, net_snmp_tools: None) -> Iterator[SnmpSim]:
    """One snmpsim on a free port serving the recorded linux-full-walk and the generated devices."""
    root = tmp_path_factory.mktemp("snmpsim")
    agent = SnmpSim(sim_data_dir(root), [free_udp_port()]).start("switch24")
    yield agent
    agent.stop()


@pytest.fixture
def snmpd(tmp_path: Path, net_snmp_tools: None) -> Iterator[SnmpDaemon]:
    agent = SnmpDaemon(
        tmp_path / "snmpd",
        free_udp_port(),
        users=[
            ("amoskys256", "SHA-256", "auth-pass-256-xyz", "AES", "priv-pass-128-xyz"),
            ("amoskys512", "SHA-512", "auth-pass-512-xyz", "AES-256", "priv-pass-256-xyz"),
        ],
    ).start()
    yield agent
    agent.stop()


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)
