"""Time as collectors and the supervisor see it: the system clock, or one a test drives by hand."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for timestamps, monotonic time for intervals, and a sleep on the same timeline."""

    def time_ns(self) -> int: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: time.time_ns, time.monotonic and asyncio.sleep."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that stands still until ``advance()`` moves it; sleepers wake when their time comes.

    For tests and replays: backoff delays and poll intervals become exact and instant.
    """

    def __init__(self, *, wall_ns: int = 1_700_000_000_000_000_000, monotonic: float = 1000.0) -> None:
        self._wall0 = wall_ns
        self._mono0 = monotonic
        self._now = monotonic
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time_ns(self) -> int:
        return self._wall0 + round((self._now - self._mono0) * 1e9)

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self._now + seconds, next(self._order), future)
        heapq.heappush(self._sleepers, entry)
        try:
            await future
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come (they run at the next
        await of the caller)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def pending(self) -> list[float]:
        """Seconds left for each current sleeper, soonest first."""
        return [deadline - self._now for deadline, _, _ in sorted(self._sleepers)]

    async def wait_sleeping(self, count: int = 1, *, within_seconds: float = 5.0) -> list[float]:
        """Let other tasks run until at least `count` of them sleep on this clock (real-time deadline);
        returns pending()."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_seconds
        spins = 0
        while len(self._sleepers) < count:
            if loop.time() > deadline:
                raise TimeoutError(
                    f"after {within_seconds} s, {len(self._sleepers)} task(s) sleep on the fake clock, expected {count}"
                )
            spins += 1
            await asyncio.sleep(0 if spins < 100 else 0.001)
        return self.pending()
