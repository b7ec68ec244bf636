"""Fixtures of the SNMP collector tests: real agents on free ports, and the collector under a harness."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from snmp_agents import RECORDED, SnmpDaemon, SnmpSim, device_snmprec, free_udp_port

from amoskys.collectors.context import ApplianceInfo, CollectorContext
from amoskys.collectors.snmp.collector import SnmpCollector
from amoskys.collectors.snmp.config import SnmpConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2

from support import require_tool

#: Devices every snmpsim of these tests serves (community = name).
SIM_DEVICES = {
    "switch24": lambda: device_snmprec("switch24", 24, octets_per_second=1000),
    "legacy4": lambda: device_snmprec("legacy4", 4, hc=False, octets_per_second=1000),
    # ifInOctets.1 passes 2^32 about 1.5 s after the simulator starts, at 100 MB/s
    "wrap32": lambda: device_snmprec(
        "wrap32", 2, hc=False, octets_per_second=100_000_000, in32_initial=2**32 - 150_000_000, in32_wrap=True
    ),
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


def secret_file(directory: Path, name: str, value: str) -> str:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


@dataclass
class Harness:
    """The SNMP collector with a list for a bus, real clock, own metrics, captured logs."""

    tmp_path: Path
    sink: list[events_pb2.Envelope] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    logs: list[dict[str, Any]] = field(default_factory=list)
    ctx: CollectorContext | None = None

    def context(self) -> CollectorContext:
        async def publish(envelopes: Sequence[events_pb2.Envelope]) -> None:
            self.sink.extend(envelopes)

        self.ctx = CollectorContext(
            "snmp",
            publish=publish,
            stamper=EnvelopeStamper("box"),
            metrics=self.metrics,
            data_dir=self.tmp_path,
            appliance=ApplianceInfo("box", "0.0", "host", "appliance", 0),
        )
        return self.ctx

    async def run(self, config: SnmpConfig, seconds: float, environ: dict[str, str] | None = None) -> None:
        """Run the collector for `seconds` of real time, then cancel it (as the supervisor does)."""
        collector = SnmpCollector(config, self.context(), environ=environ or {})
        with structlog.testing.capture_logs() as captured:
            task = asyncio.create_task(collector.run())
            try:
                await asyncio.wait_for(asyncio.shield(task), seconds)
            except TimeoutError:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self.logs.extend(captured)

    def samples(self, target: str | None = None) -> list[events_pb2.SnmpSample]:
        return [e.snmp for e in self.sink if target is None or e.snmp.target == target]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.logs if line.get("event") == name]


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)
