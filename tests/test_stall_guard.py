"""The CPU-stall guard (tests/stall_guard.py) catches a loop callback that burns CPU, and only that."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stall_guard
import uvloop

import support


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.fixture
def reported() -> Iterator[list[str]]:
    lines: list[str] = []
    stall_guard.time_handles(lines.append)
    try:
        yield lines
    finally:
        stall_guard.untime_handles()


async def test_a_callback_burning_cpu_is_reported_by_name(reported: list[str]) -> None:
    def cpu_hog() -> None:
        _burn(0.15)

    def quick() -> None:
        _burn(0.01)

    loop = asyncio.get_running_loop()
    loop.call_soon(cpu_hog)
    loop.call_soon(quick)
    await support.eventually(lambda: reported, what="the stall reported")
    await asyncio.sleep(0)
    assert len(reported) == 1, reported
    assert reported[0].startswith("CPU stall: <Handle ") and "cpu_hog" in reported[0]
    assert int(reported[0].split()[-2]) >= 150 and reported[0].endswith(" ms")


async def test_a_task_step_is_named_by_its_coroutine(reported: list[str]) -> None:
    async def hogging_task() -> None:
        await asyncio.sleep(0)
        _burn(0.15)

    await asyncio.create_task(hogging_task(), name="hog")
    assert (
        len(reported) == 1
        and reported[0].startswith("CPU stall: <task hog ")
        and "hogging_task" in reported[0]
    )


async def test_waiting_is_not_a_stall(reported: list[str]) -> None:
    """Wall clock without CPU (here a sleep on the loop; on shared cores, preemption) is not counted."""
    asyncio.get_running_loop().call_soon(time.sleep, 0.3)
    await asyncio.sleep(0.01)
    assert reported == []


async def test_task_steps_timed_through_the_task_factory() -> None:
    """On uvloop, whose handles are compiled, the guard times task steps instead."""
    lines: list[str] = []

    async def main() -> None:
        stall_guard.time_loop(asyncio.get_running_loop(), lines.append)
        await asyncio.create_task(stall_guard.deliberate_cpu_burn(150))
        await asyncio.create_task(stall_guard.deliberate_cpu_burn(5))

    await asyncio.to_thread(uvloop.run, main())
    assert len(lines) == 1 and lines[0].startswith("CPU stall: <task deliberate_cpu_burn>"), lines


async def test_a_stall_says_how_much_of_it_was_garbage_collection() -> None:
    """A full collection inside a slow step is named in its line: a stall the step's own code did
    not cause reads differently from one it did."""
    lines: list[str] = []

    async def collect_among_many_objects() -> None:
        garbage = [[i] for i in range(1_000_000)]
        gc.collect()
        del garbage
        await stall_guard.deliberate_cpu_burn(110)

    async def main() -> None:
        stall_guard.watch_collections()
        stall_guard.time_loop(asyncio.get_running_loop(), lines.append)
        await asyncio.create_task(collect_among_many_objects())
        await asyncio.create_task(stall_guard.deliberate_cpu_burn(150))

    await asyncio.to_thread(uvloop.run, main())
    assert len(lines) == 2, lines
    assert "collect_among_many_objects> " in lines[0] and "(garbage collection: " in lines[0], lines
    assert "generation 2)" in lines[0]
    assert "garbage collection" not in lines[1], lines


@pytest.mark.e2e
def test_appliance_factory_fails_a_child_that_stalls(appliance_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A real `amoskys run` child (uvloop) burning 300 ms of CPU in one task step is caught: the line on
    its stderr, and the message appliance_factory fails the test with. A child that does not stall (the
    other e2e tests) gives no message."""
    app = support.start_appliance(
        tmp_path / "stalling", tmp_path / "stalling.log", env={stall_guard.BURN_ENV: "300"}
    )
    try:
        app.wait_ready(timeout=60)
        found = support.wait_for(
            lambda: support.stall_findings(app.log_path), timeout=30, what="the stall line in the child's log"
        )
    finally:
        app.proc.send_signal(signal.SIGKILL)
        app.proc.wait(timeout=10)
    assert any("deliberate_cpu_burn" in line for line in found), found
    message = support.stall_failures([app])
    assert "event-loop callbacks over 100 ms of CPU" in message and "deliberate_cpu_burn" in message
    quiet = appliance_factory()
    quiet.wait_ready(timeout=60)
    assert support.stall_failures([quiet]) == ""  # and the fixture checks it again at teardown
