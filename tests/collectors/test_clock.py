"""FakeClock: time stands still until advanced; sleepers wake in order; cancelled ones are forgotten."""

from __future__ import annotations

import asyncio

import pytest

from amoskys.collectors.clock import FakeClock, SystemClock


async def test_sleepers_wake_when_their_time_comes() -> None:
    clock = FakeClock(wall_ns=5_000_000_000, monotonic=100.0)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("a", 5)), asyncio.create_task(sleeper("b", 2))]
    assert await clock.wait_sleeping(2) == [2.0, 5.0]
    clock.advance(3)
    await tasks[1]
    assert woke == ["b"] and clock.monotonic() == 103.0 and clock.time_ns() == 8_000_000_000
    clock.advance(2)
    await tasks[0]
    assert woke == ["b", "a"] and clock.pending() == []


async def test_a_cancelled_sleeper_is_forgotten() -> None:
    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(10))
    await clock.wait_sleeping()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending() == []


def test_time_never_goes_back() -> None:
    with pytest.raises(ValueError, match="cannot go back"):
        FakeClock().advance(-1)


async def test_wait_sleeping_times_out_with_a_count() -> None:
    with pytest.raises(TimeoutError, match="0 task"):
        await FakeClock().wait_sleeping(within_seconds=0.01)


async def test_system_clock_is_the_real_one() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    await clock.sleep(0)
    assert clock.monotonic() >= before and clock.time_ns() > 1_600_000_000 * 10**9
