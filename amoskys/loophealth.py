"""How late the event loop runs: a timer task's lateness as a histogram, and slow callbacks by name.

A task asks to wake every TICK_SECONDS and records how late it woke
(``amoskys_event_loop_lag_seconds``): every callback that held the loop meanwhile shows up as lag. The
last minute of samples is kept for the Overview's p99.

With log level debug, each callback that holds the loop longer than ``SLOW_CALLBACK_SECONDS`` is
logged (``slow_callback``, naming it). asyncio does this itself only in its debug mode, which also
records a traceback at every call_soon and costs far more than the check; so we time callbacks
ourselves, and only when debug logs are on (one clock read before and after each callback).
"""

from __future__ import annotations

import asyncio
import asyncio.events
import logging
import time
from collections import deque
from collections.abc import Callable
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
    """Forever: sleep `tick`, record how late the wake-up came."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + tick
        await asyncio.sleep(tick)
        now = loop.time()
        lag.observe(now, max(0.0, now - asked))


_original_run: Callable[[asyncio.Handle], None] | None = None


def _describe(handle: asyncio.Handle) -> str:
    callback: Any = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):  # a task's step: name the coroutine, not Task.__step
        coro = owner.get_coro()
        return f"task {owner.get_name()} ({getattr(coro, '__qualname__', coro)})"
    return repr(handle)


def time_callbacks_when_debug(threshold: float = SLOW_CALLBACK_SECONDS) -> bool:
    """When debug logs are on, log every loop callback that runs longer than `threshold` seconds.
    Returns whether the timing is on. Idempotent; ``untime_callbacks`` undoes it."""
    global _original_run
    if _original_run is not None:
        return True
    if not logging.getLogger(__name__).isEnabledFor(logging.DEBUG):
        return False
    original = asyncio.events.Handle._run
    clock = time.perf_counter

    def _run(self: asyncio.Handle) -> None:
        began = clock()
        original(self)
        took = clock() - began
        if took > threshold:
            log.debug("slow_callback", callback=_describe(self), ms=round(took * 1000, 1))

    _original_run = original
    asyncio.events.Handle._run = _run  # type: ignore[method-assign]
    return True


def untime_callbacks() -> None:
    global _original_run
    if _original_run is not None:
        asyncio.events.Handle._run = _original_run  # type: ignore[method-assign,assignment]
        _original_run = None
