"""ctx.poll(): on schedule, a tick skipped while a collect overruns, one warning, one recovery line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from amoskys.collectors.clock import FakeClock

from support import eventually, make_context


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    structlog.reset_defaults()
    with capture_logs() as captured:
        yield captured


async def test_collects_at_once_then_every_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    ctx = make_context("poller", tmp_path, clock=clock)
    times: list[float] = []

    async def collect() -> None:
        times.append(clock.monotonic())

    task = asyncio.create_task(ctx.poll(10, collect))
    try:
        for _ in range(3):
            assert await clock.wait_sleeping() == [10.0]
            clock.advance(10)
        await clock.wait_sleeping()
        assert times == [1000.0, 1010.0, 1020.0, 1030.0]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_tick_is_skipped_while_collect_runs_and_overrun_warns_once(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    clock = FakeClock()
    ctx = make_context("poller", tmp_path, clock=clock)
    starts: list[float] = []
    gates: dict[int, asyncio.Event] = {}

    async def collect() -> None:
        starts.append(clock.monotonic())
        gate = gates.get(len(starts))
        if gate is not None:
            await gate.wait()

    gates[2] = asyncio.Event()  # the second collect hangs until released
    gates[4] = asyncio.Event()  # and so does the fourth
    task = asyncio.create_task(ctx.poll(10, collect))
    try:
        await clock.wait_sleeping()
        clock.advance(10)  # t=1010: collect 2 starts and blocks
        await eventually(lambda: len(starts) == 2, what="collect 2 to start")
        clock.advance(25)  # t=1035: the ticks at 1020 and 1030 come while it runs
        await asyncio.sleep(0.01)  # give a (wrong) extra collect every chance to start
        assert starts == [1000.0, 1010.0]  # no collect started while one was running
        gates[2].set()
        assert await clock.wait_sleeping() == [5.0]  # back on the schedule: next tick at 1040
        overruns = [e for e in logs if e["event"] == "collector_poll_overrun"]
        assert len(overruns) == 1
        assert overruns[0]["skipped_ticks"] == 2 and overruns[0]["collect_seconds"] == 25.0
        assert overruns[0]["log_level"] == "warning" and overruns[0]["collector"] == "poller"
        assert ctx.ticks_skipped == 2 and ctx.busy_seconds == 25.0

        clock.advance(5)  # t=1040: collect 3, on time
        await clock.wait_sleeping()
        recovered = [e for e in logs if e["event"] == "collector_poll_recovered"]
        assert len(recovered) == 1 and recovered[0]["skipped_ticks"] == 2

        clock.advance(10)  # t=1050: collect 4 blocks again: a new overrun, a new (single) warning
        await eventually(lambda: len(starts) == 4, what="collect 4 to start")
        clock.advance(15)
        gates[4].set()
        await clock.wait_sleeping()
        assert starts == [1000.0, 1010.0, 1040.0, 1050.0]
        assert len([e for e in logs if e["event"] == "collector_poll_overrun"]) == 2
        metric = ctx.metrics.registry.get_sample_value
        assert metric("amoskys_collector_ticks_skipped_total", {"collector": "poller"}) == 3
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_failing_collect_propagates(tmp_path: Path) -> None:
    clock = FakeClock()
    ctx = make_context("poller", tmp_path, clock=clock)

    async def collect() -> None:
        raise OSError("psutil: permission denied")

    with pytest.raises(OSError, match="permission denied"):
        await ctx.poll(10, collect)


async def test_a_non_positive_interval_is_refused(tmp_path: Path) -> None:
    ctx = make_context("poller", tmp_path, clock=FakeClock())

    async def collect() -> None:
        pass

    with pytest.raises(ValueError, match=r"collector 'poller': poll interval must be > 0 seconds, got 0"):
        await ctx.poll(0, collect)
