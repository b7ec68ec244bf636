"""The SNMP collector under a test harness (list for a bus, own metrics, captured logs), and secret
files. A module of its own (not conftest) so tests import it by a unique name."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from amoskys.collectors.clock import SystemClock
from amoskys.collectors.context import CollectorContext
from amoskys.collectors.snmp.collector import SnmpCollector
from amoskys.collectors.snmp.config import SnmpConfig
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2

from support import ListSink, make_context


def secret_file(directory: Path, name: str, value: str) -> str:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


@dataclass
class Harness:
    """The SNMP collector with a ListSink for a bus, real clock, own metrics, captured logs."""

    tmp_path: Path
    sink: ListSink = field(default_factory=ListSink)
    metrics: Metrics = field(default_factory=Metrics)
    logs: list[dict[str, Any]] = field(default_factory=list)
    ctx: CollectorContext | None = None

    def context(self) -> CollectorContext:
        self.ctx = make_context(
            "snmp", self.tmp_path, publish=self.sink, metrics=self.metrics, clock=SystemClock()
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
