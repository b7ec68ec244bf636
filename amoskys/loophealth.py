"""How late the event loop runs: a timer task's lateness as a histogram, and slow callbacks by name.

A task asks to wake every TICK_SECONDS and records how late it woke
(``amoskys_event_loop_lag_seconds``): every callback that held the loop meanwhile shows up as lag. The
last minute of samples is kept for the Overview's p99.

With log level debug, each task step that holds the loop longer than ``SLOW_CALLBACK_SECONDS`` is
logged (``slow_callback``, naming the coroutine). asyncio (and uvloop) do this only in their debug
mode, which also records a stack at every call_soon and costs far more than the check; so we time task
steps ourselves through the loop's task factory, and only when debug logs are on (one clock read
before and after each step).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Histogram

log = structlog.get_logger(__name__)

TICK_SECONDS = 0.25
WINDOW_SECONDS = 60.0
SLOW_CALLBACK_SECONDS = 0.1
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLag:
    """``amoskys_event_loop_lag_seconds`` and the last minute of samples (a ``Metrics.component``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            "amoskys_event_loop_lag_seconds",
            f"How late a timer on the event loop woke (asked every {TICK_SECONDS} s): the time the loop "
            "spent in other callbacks before it could run it.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self._recent: deque[tuple[float, float]] = deque()  # (monotonic time, lag)

    def observe(self, now: float, lag: float) -> None:
        """One sample: `lag` seconds late at `now` (time.monotonic())."""
        self.histogram.observe(lag)
        self._recent.append((now, lag))
        while self._recent and self._recent[0][0] < now - WINDOW_SECONDS:
            self._recent.popleft()

    def summary(self, now: float) -> dict[str, float | int | None]:
        """p99 and max of the lag over the last minute before `now` (None without samples), in seconds."""
        lags = sorted(lag for t, lag in self._recent if t >= now - WINDOW_SECONDS)
        if not lags:
            return {"p99_seconds": None, "max_seconds": None, "samples": 0}
        p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
        return {"p99_seconds": round(p99, 4), "max_seconds": round(lags[-1], 4), "samples": len(lags)}


async def measure_lag(lag: LoopLag, *, tick: float = TICK_SECONDS) -> None:
    """Forever: sleep `tick`, record how late the wake-up came (time.monotonic: uvloop's loop.time()
    counts whole milliseconds)."""
    while True:
        asked = time.monotonic() + tick
        await asyncio.sleep(tick)
        now = time.monotonic()
        lag.observe(now, max(0.0, now - asked))


class TimedSteps(Coroutine[Any, Any, Any]):
    """A task's coroutine, each step (send or throw) timed by `clock`; a step longer than `limit`
    is passed to `report` with the task's coroutine and the seconds it took."""

    __slots__ = ("_clock", "_coro", "_limit", "_report")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        clock: Callable[[], float],
        limit: float,
        report: Callable[[Coroutine[Any, Any, Any], float], None],
    ) -> None:
        self._coro, self._clock, self._limit, self._report = coro, clock, limit, report

    def send(self, value: Any) -> Any:
        began = self._clock()
        try:
            return self._coro.send(value)
        finally:
            self._check(began)

    def throw(self, *args: Any) -> Any:
        began = self._clock()
        try:
            return self._coro.throw(*args)
        finally:
            self._check(began)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self._coro.__await__()

    def _check(self, began: float) -> None:
        took = self._clock() - began
        if took > self._limit:
            self._report(self._coro, took)

    def __repr__(self) -> str:
        return repr(self._coro)


def time_task_steps(
    loop: asyncio.AbstractEventLoop,
    clock: Callable[[], float],
    limit: float,
    report: Callable[[Coroutine[Any, Any, Any], float], None],
) -> None:
    """Time every step of every task created on `loop` from now on (any loop, uvloop included: it
    goes through the task factory, on top of one already set)."""
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        timed = TimedSteps(coro, clock, limit, report)
        if previous is not None:
            return previous(loop, timed, **kwargs)
        return asyncio.Task(timed, loop=loop, **kwargs)

    loop.set_task_factory(factory)


def _log_slow_step(coro: Coroutine[Any, Any, Any], seconds: float) -> None:
    log.debug(
        "slow_callback", callback=getattr(coro, "__qualname__", repr(coro)), ms=round(seconds * 1000, 1)
    )


def time_callbacks_when_debug(threshold: float = SLOW_CALLBACK_SECONDS) -> bool:
    """When debug logs are on, log every task step on the running loop that holds it longer than
    `threshold` seconds (wall clock), naming the coroutine. Returns whether the timing is on.

    Plain callbacks (call_soon, protocol callbacks) are not timed: the product's work runs in tasks
    (request handlers, the bus's calls, the writer, the collectors); asyncio's debug mode
    (PYTHONASYNCIODEBUG=1) times every callback, at the cost of a stack capture per call_soon."""
    if not logging.getLogger(__name__).isEnabledFor(logging.DEBUG):
        return False
    time_task_steps(asyncio.get_running_loop(), time.perf_counter, threshold, _log_slow_step)
    return True
