"""Run a ProcessCollector in the test's event loop with a list sink (real clock, real processes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from amoskys.collectors.context import ApplianceInfo, CollectorContext
from amoskys.collectors.process.collector import ProcessCollector
from amoskys.collectors.process.config import ProcessConfig
from amoskys.events import EnvelopeStamper
from amoskys.metrics import Metrics
from amoskys.proto import events_pb2

from support import IN_CI

EXEC = events_pb2.ProcessEvent.EXEC
EXIT = events_pb2.ProcessEvent.EXIT
SNAPSHOT = events_pb2.ProcessEvent.SNAPSHOT


def require_root() -> None:
    """Skip unless root (the proc connector needs CAP_NET_ADMIN); CI runs as root, so there it fails."""
    if os.geteuid() == 0:
        return
    message = "needs root (CAP_NET_ADMIN) for the netlink proc connector"
    if IN_CI:
        pytest.fail(f"{message}: CI runs the tests as root")
    pytest.skip(message)


class Harness:
    """``async with Harness(tmp_path, mode="netlink") as h:`` runs the collector until the block ends."""

    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.sink: list[events_pb2.Envelope] = []

        async def publish(envelopes: Sequence[events_pb2.Envelope]) -> None:
            self.sink.extend(envelopes)

        config.setdefault("snapshot_interval_seconds", 3600.0)
        self.ctx = CollectorContext(
            "process",
            publish=publish,
            stamper=EnvelopeStamper("test-box"),
            metrics=Metrics(),
            data_dir=tmp_path,
            appliance=ApplianceInfo("test-box", "0", "host", "appliance", 0),
        )
        self.collector = ProcessCollector(ProcessConfig(**config), self.ctx)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Harness:
        reason = self.collector.self_check()
        if reason is not None:
            raise AssertionError(f"self_check refused to run: {reason}")
        self.task = asyncio.create_task(self.collector.run())
        ready = asyncio.create_task(self.collector.mode_known.wait())
        await asyncio.wait({self.task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            ready.cancel()
            self.task.result()
        if not ready.done():
            raise AssertionError("the collector did not settle on a mode within 15 s")
        await self.eventually(lambda: self.collector.stats.snapshots >= 1, what="the first snapshot")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    @property
    def mode(self) -> str:
        return self.collector.mode

    def processes(self, kind: int | None = None, pid: int | None = None) -> list[events_pb2.ProcessEvent]:
        """Process bodies in publish order, optionally of one kind and pid."""
        return [
            e.process
            for e in self.sink
            if e.WhichOneof("body") == "process"
            and (kind is None or e.process.kind == kind)
            and (pid is None or e.process.pid == pid)
        ]

    def envelopes(self, kind: int, pid: int) -> list[events_pb2.Envelope]:
        return [
            e
            for e in self.sink
            if e.WhichOneof("body") == "process" and e.process.kind == kind and e.process.pid == pid
        ]

    async def eventually(self, predicate: Callable[[], Any], *, within: float = 10.0, what: str) -> Any:
        """Poll predicate() on the loop until truthy; fail after `within` seconds (and on a crash)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if self.task is not None and self.task.done():
                self.task.result()
                raise AssertionError(f"the collector stopped while waiting for {what}")
            value = predicate()
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {within} s waiting for {what}")
            await asyncio.sleep(0.01)


def spawn(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
