"""Run a ProcessCollector in the test's event loop with a list sink (real clock, real processes)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from amoskys.collectors.clock import SystemClock
from amoskys.collectors.process.collector import ProcessCollector
from amoskys.collectors.process.config import ProcessConfig
from amoskys.proto import events_pb2

import support
from support import ListSink, eventually, make_context

EXEC = events_pb2.ProcessEvent.EXEC
EXIT = events_pb2.ProcessEvent.EXIT
SNAPSHOT = events_pb2.ProcessEvent.SNAPSHOT


def require_root() -> None:
    """Skip unless root (the proc connector needs CAP_NET_ADMIN); CI runs as root, so there it fails."""
    support.require_root("needs root (CAP_NET_ADMIN) for the netlink proc connector")


class Harness:
    """``async with Harness(tmp_path, mode="netlink") as h:`` runs the collector until the block ends."""

    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.sink = ListSink()
        config.setdefault("snapshot_interval_seconds", 3600.0)
        self.ctx = make_context(
            "process", tmp_path, publish=self.sink, clock=SystemClock(), source="test-box"
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
        """support.eventually, failing at once if the collector stops meanwhile."""

        def unless_stopped() -> Any:
            if self.task is not None and self.task.done():
                self.task.result()
                raise AssertionError(f"the collector stopped while waiting for {what}")
            return predicate()

        return await eventually(unless_stopped, within=within, what=what)


def spawn(argv: Sequence[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd
    )
