"""Loop health: the lag histogram sees a callback that holds the loop, the Overview shows its p99,
slow callbacks are named in debug logs, and /metrics renders on the loop only while that is cheap."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from amoskys import loophealth
from amoskys.loophealth import LoopLag, measure_lag
from amoskys.web.exposition import Exposition

import support

sys.path.insert(0, str(Path(__file__).parent / "web"))
from web_harness import close_web, make_web


def _hold_the_loop(seconds: float) -> None:
    """A callback that keeps the loop busy (CPU, not a blocking call) for `seconds`."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_lag_histogram_sees_a_callback_holding_the_loop() -> None:
    lag = LoopLag(CollectorRegistry())
    task = asyncio.create_task(measure_lag(lag, tick=0.01))
    try:
        loop = asyncio.get_running_loop()
        await support.eventually(lambda: lag.summary(time.monotonic())["samples"], what="a first sample")
        loop.call_soon(_hold_the_loop, 0.2)
        summary = await support.eventually(
            lambda: (s := lag.summary(time.monotonic()))["max_seconds"] and s["max_seconds"] >= 0.15 and s,
            what="the 200 ms hold seen as lag",
        )
    finally:
        task.cancel()
    assert summary["samples"] >= 2
    count = next(s.value for s in lag.histogram.collect()[0].samples if s.name.endswith("_count"))
    assert count == summary["samples"]


def test_summary_is_the_last_minute_only() -> None:
    lag = LoopLag(CollectorRegistry())
    lag.observe(0.0, 0.5)  # a stall long ago
    for i in range(100):
        lag.observe(100.0 + i * 0.25, 0.001 * (i % 10))
    s = lag.summary(125.0)
    assert s["samples"] == 100 and s["max_seconds"] == 0.009 and s["p99_seconds"] == 0.009
    assert lag.summary(1000.0) == {"p99_seconds": None, "max_seconds": None, "samples": 0}


async def test_overview_shows_loop_lag(tmp_path: Path) -> None:
    web = await make_web(tmp_path)
    lag = web.ctx.metrics.component(LoopLag)
    task = asyncio.create_task(measure_lag(lag, tick=0.01))
    try:
        await support.eventually(lambda: lag.summary(time.monotonic())["samples"], what="a sample")
        c, _ = await web.login("viewer", "viewer-password-123")
        o = (await c.get("/api/v1/overview")).json()
        assert o["loop_lag"]["samples"] >= 1 and o["loop_lag"]["p99_seconds"] is not None
        html = (await c.get("/")).text
        assert 'id="loop-lag"' in html and "loop lag p99:" in html and " ms (max " in html
        metrics = (await web.client().get("/metrics")).text
        assert "amoskys_event_loop_lag_seconds_bucket" in metrics
    finally:
        task.cancel()
        await close_web(web)


@pytest.fixture
def debug_logs() -> Iterator[list[dict]]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        with structlog.testing.capture_logs() as captured:
            yield captured
    finally:
        root.setLevel(level)


async def test_slow_task_step_named_in_debug_logs(debug_logs: list[dict]) -> None:
    assert loophealth.time_callbacks_when_debug(0.05)

    async def hog_the_loop() -> int:
        await asyncio.sleep(0)
        _hold_the_loop(0.1)  # the second step holds the loop
        await asyncio.sleep(0)
        return 7

    async def quick() -> None:
        await asyncio.sleep(0)

    assert await asyncio.create_task(hog_the_loop()) == 7  # results and awaits pass through
    await asyncio.create_task(quick())
    slow = [e for e in debug_logs if e["event"] == "slow_callback"]
    assert len(slow) == 1, slow
    assert "hog_the_loop" in slow[0]["callback"] and slow[0]["ms"] >= 50 and slow[0]["log_level"] == "debug"


async def test_task_steps_are_not_timed_at_info() -> None:
    assert logging.getLogger("amoskys.loophealth").getEffectiveLevel() > logging.DEBUG
    assert not loophealth.time_callbacks_when_debug()
    assert asyncio.get_running_loop().get_task_factory() is None


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_metrics_render_on_the_loop_while_cheap() -> None:
    exp = Exposition(lambda: b"cheap\n", clock=_Clock())
    assert [await exp.body() for _ in range(3)] == [b"cheap\n"] * 3
    assert exp.on_loop == 3 and exp.off_loop == 0


async def test_costly_metrics_served_from_a_fresh_cache_rendered_off_the_loop() -> None:
    renders: list[str] = []
    clock = _Clock()

    def costly() -> bytes:
        import threading

        renders.append(threading.current_thread().name)
        end = time.thread_time() + 0.02  # 20 ms of this thread's CPU: over the 5 ms budget
        while time.thread_time() < end:
            pass
        return f"render {len(renders)}\n".encode()

    exp = Exposition(costly, clock=clock)
    assert await exp.body() == b"render 1\n"  # the first, on the loop, shows the cost
    assert exp.on_loop == 1 and exp.cost_seconds > 0.005
    clock.now += 0.4
    assert await exp.body() == b"render 1\n"  # fresh enough: the cache, nothing rendered
    assert len(renders) == 1
    clock.now += 0.3  # 0.7 s old: still served, and a render starts in a worker thread
    assert await exp.body() == b"render 1\n"
    await support.eventually(lambda: exp.off_loop == 1, what="the refresh off the loop")
    clock.now += 1.5  # older than 1 s: wait for a new render, one for all the scrapes waiting
    bodies = await asyncio.gather(*(exp.body() for _ in range(5)))
    assert set(bodies) == {b"render 3\n"} and exp.off_loop == 2
    assert renders[0] == "MainThread" and all(name != "MainThread" for name in renders[1:])
